// The dashboard end to end: a real 2-worker `lorafleet train --dashboard`,
// watched in headless Chromium until the loss chart has points and the worker
// table shows both workers live; its screenshot is kept as
// test/artifacts/dashboard.png. Then `lorafleet dashboard --run` replays the
// same run from its events.jsonl.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  REPO_ROOT,
  ensureBuilt,
  initTinyModel,
  makeTempDir,
  patternRecords,
  preferenceRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');
const SCREENSHOT = join(REPO_ROOT, 'test', 'artifacts', 'dashboard.png');
const TOKEN = 'e2e-token';

// Flags that work in containers and CI: no sandbox, no GPU, nothing fetched from the network.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let dir: string | undefined;
let profile: string | undefined;
let model: string;
let data: string;
let browser: BrowserContext | undefined;
const children = new Set<ChildProcessWithoutNullStreams>();

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: the dashboard's browser test needs Chromium there (Debian: apt-get install chromium)`,
    );
  }
  await ensureBuilt();
  dir = await makeTempDir('dashboard-e2e');
  model = await initTinyModel(dir, 'model');
  data = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(60));
  profile = await mkdtemp(join(tmpdir(), 'lorafleet-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1440, height: 1000 },
  });
}, 300_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await browser?.close();
  await removeDir(profile);
  await removeDir(dir);
});

interface Running {
  child: ChildProcessWithoutNullStreams;
  /** The URL from its "dashboard: URL" line. */
  url: Promise<string>;
  exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** `lorafleet ARGS` in the background, its dashboard URL read from stdout. */
function start(args: string[]): Running {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    env: { ...process.env, LORAFLEET_DEBUG: '' },
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    }),
  );
  const url = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (s: string) => {
      stdout += s;
      const m = /^dashboard: (http:\/\/\S+)$/m.exec(stdout);
      if (m) resolve(m[1]!);
    });
    void exit.then(({ code }) =>
      reject(
        new Error(
          `lorafleet ${args[0]} exited ${code} without a dashboard URL:\n${stdout}\n${stderr}`,
        ),
      ),
    );
  });
  return { child, url, exit };
}

/** A page that records script errors and Content-Security-Policy violations. */
async function openPage(url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser!.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { page, problems };
}

async function lossPoints(page: Page): Promise<number> {
  const chart = page.locator('[data-testid="loss-chart"]');
  return (await chart.count()) === 0 ? 0 : Number(await chart.getAttribute('data-points'));
}

const liveWorkers = (page: Page) => page.locator('[data-testid="worker-row"][data-live]').count();

const checkpointLinks = (page: Page) => page.locator('[data-testid="checkpoint"] a').count();

async function workerRows(page: Page): Promise<{ rank: number; live: boolean }[]> {
  const rows = await page.locator('[data-testid="worker-row"]').all();
  return Promise.all(
    rows.map(async (row) => ({
      rank: Number(await row.getAttribute('data-rank')),
      live: (await row.getAttribute('data-live')) !== null,
    })),
  );
}

describe('the dashboard in Chromium', () => {
  const out = () => join(dir!, 'run');

  it('shows a live 2-worker run: loss points, both workers live, checkpoints to download', async () => {
    const run = start([
      'train',
      ...['--model', model, '--data', data, '--out', out(), '--workers', '2'],
      ...['--steps', '400', '--batch-size', '6', '--lr', '1e-2', '--checkpoint-every', '10'],
      // Every checkpoint kept: at ~40 ms a step, the oldest link on the page would be pruned
      // (the default keeps 3) before the test fetches it.
      ...['--keep-checkpoints', '1000'],
      ...['--dashboard', '127.0.0.1:0', '--dashboard-token', TOKEN],
    ]);
    const url = await run.url;
    expect(url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/\\?token=${TOKEN}$`));

    // The token guards the live server: a request without it is refused.
    const bare = new URL(url);
    bare.search = '';
    expect((await fetch(new URL('api/state', bare))).status).toBe(401);
    expect((await fetch(new URL(`api/state?token=${TOKEN}`, bare))).status).toBe(200);

    const { page, problems } = await openPage(url);
    // Polled from here: the page's Content-Security-Policy forbids evaluating strings in it.
    await vi.waitFor(
      async () => {
        expect(await lossPoints(page), 'points on the loss chart').toBeGreaterThanOrEqual(5);
        expect(await liveWorkers(page), 'live workers in the table').toBe(2);
      },
      { timeout: 30_000, interval: 100 },
    );
    expect(await lossPoints(page)).toBeGreaterThanOrEqual(5);
    expect(await workerRows(page)).toEqual([
      { rank: 0, live: true },
      { rank: 1, live: true },
    ]);

    // For the picture: some curve and a checkpoint, while both workers are still in the ring.
    await vi
      .waitFor(
        async () => {
          expect(await lossPoints(page)).toBeGreaterThanOrEqual(60);
          expect(await checkpointLinks(page)).toBeGreaterThan(0);
        },
        { timeout: 20_000, interval: 100 },
      )
      .catch(() => undefined);
    await mkdir(join(REPO_ROOT, 'test', 'artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(20_000);

    // A checkpoint link downloads the adapter through the page (token passed along).
    const href = await page.getAttribute('[data-testid="checkpoint"] a', 'href');
    expect(href).toMatch(/^\.\/api\/checkpoints\/step-\d{6}\/adapter_config\.json\?token=/);
    const download = await fetch(new URL(href!, url));
    expect(download.status).toBe(200);
    expect(await download.json()).toMatchObject({ peft_type: 'LORA' });

    // Ctrl-C: the run saves and ends; the page shows it, and no worker stays live.
    run.child.kill('SIGINT');
    const { code, stderr } = await run.exit;
    expect([0, 130], stderr).toContain(code); // 130: stopped by SIGINT, adapter saved
    await page.waitForSelector('[data-testid="run-status"]:text("interrupted")', {
      timeout: 10_000,
    });
    expect((await workerRows(page)).filter((w) => w.live)).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  }, 90_000);

  it('lorafleet dashboard --run replays the finished run from its events.jsonl', async () => {
    const steps = (await readFile(join(out(), 'metrics.jsonl'), 'utf8'))
      .trimEnd()
      .split('\n').length;
    const replay = start(['dashboard', '--run', out(), '--listen', '127.0.0.1:0']);
    const url = await replay.url;
    const state = (await (await fetch(new URL('api/state', url))).json()) as {
      state: { end: { status: string }; lastStep: { step: number } };
      downloads: { name: string }[];
    };
    expect(state.state.end.status).toBe('interrupted');
    expect(state.state.lastStep.step).toBe(steps);
    expect(state.downloads.map((d) => d.name)).toContain('adapter');

    const { page, problems } = await openPage(url);
    await page.waitForSelector('[data-testid="run-status"]:text("interrupted")', {
      timeout: 10_000,
    });
    expect(await lossPoints(page)).toBe(steps);
    expect(await workerRows(page)).toEqual([
      { rank: 0, live: false },
      { rank: 1, live: false },
    ]);
    // A run of the token loss has no rewards: their card stays hidden. Its token accuracy
    // (TRL's mean_token_accuracy) has a point per step.
    expect(await page.locator('#chart-rewards').count()).toBe(1);
    expect(await page.locator('#chart-rewards').isVisible()).toBe(false);
    await page.waitForSelector(`[data-testid="token-accuracy-chart"][data-points="${steps}"]`, {
      timeout: 10_000,
    });
    expect(await page.locator('#chart-token-accuracy').isVisible()).toBe(true);
    expect(problems).toEqual([]);
    await page.close();

    replay.child.kill('SIGINT');
    expect((await replay.exit).code).toBe(0);
  });

  it("a DPO run's page charts its reward accuracy, in training and on the held-out pairs, and its token accuracy", async () => {
    const pairs = await writeJsonl(join(dir!, 'pairs.jsonl'), preferenceRecords(12));
    const heldOut = await writeJsonl(join(dir!, 'held-out.jsonl'), preferenceRecords(4, 100));
    const dpo = join(dir!, 'dpo');
    const run = start([
      'train',
      ...['--model', model, '--data', pairs, '--eval-data', heldOut, '--eval-every', '3'],
      ...['--objective', 'dpo', '--lora-dropout', '0', '--seq-len', '24', '--steps', '6'],
      ...['--batch-size', '4', '--out', dpo, '--dashboard', '127.0.0.1:0'],
    ]);
    await run.url;
    const trained = await run.exit;
    expect(trained.code, trained.stderr).toBe(0);
    const metrics = (await readFile(join(dpo, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    expect(metrics.map((l) => typeof JSON.parse(l).rewardAccuracy)).toEqual(
      Array(6).fill('number'),
    );

    const replay = start(['dashboard', '--run', dpo, '--listen', '127.0.0.1:0']);
    const { page, problems } = await openPage(await replay.url);
    await page.waitForSelector('[data-testid="rewards-chart"][data-points="6"]', {
      timeout: 10_000,
    });
    expect(await page.locator('#chart-rewards').isVisible()).toBe(true);
    // DPOTrainer's mean_token_accuracy of the chosen responses, a point per step.
    await page.waitForSelector('[data-testid="token-accuracy-chart"][data-points="6"]');
    expect(await page.locator('#chart-token-accuracy').isVisible()).toBe(true);
    // The eval series' markers: before training, at step 3, after the last step.
    expect(await page.locator('#chart-rewards .markers.eval circle').count()).toBe(3);
    expect(problems).toEqual([]);
    await page.close();
    replay.child.kill('SIGINT');
    expect((await replay.exit).code).toBe(0);
  }, 120_000);

  it("a KTO run's page charts its reward margin and KL, and hides the reward accuracy card", async () => {
    const unpaired = (lines: number, offset = 0) =>
      preferenceRecords(lines, offset).flatMap(({ prompt, chosen, rejected }) => [
        { prompt, completion: chosen, label: true },
        { prompt, completion: rejected, label: false },
      ]);
    const examples = await writeJsonl(join(dir!, 'kto.jsonl'), unpaired(8));
    const heldOut = await writeJsonl(join(dir!, 'kto-held-out.jsonl'), unpaired(2, 100));
    const kto = join(dir!, 'kto');
    const run = start([
      'train',
      ...['--model', model, '--data', examples, '--eval-data', heldOut, '--eval-every', '3'],
      ...['--objective', 'kto', '--lora-dropout', '0', '--seq-len', '24', '--steps', '6'],
      ...['--batch-size', '4', '--out', kto, '--dashboard', '127.0.0.1:0'],
    ]);
    await run.url;
    const trained = await run.exit;
    expect(trained.code, trained.stderr).toBe(0);
    const replay = start(['dashboard', '--run', kto, '--listen', '127.0.0.1:0']);
    const { page, problems } = await openPage(await replay.url);
    await page.waitForSelector('[data-testid="kto-chart"][data-points="6"]', { timeout: 10_000 });
    expect(await page.locator('#chart-kto').isVisible()).toBe(true);
    expect(await page.locator('#chart-rewards').isVisible()).toBe(false);
    // The held-out margins: before training, at step 3, after the last step.
    expect(await page.locator('#chart-kto .markers.eval circle').count()).toBe(3);
    expect(await page.locator('#chart-kto .line.lr').count()).toBe(1); // the KL
    expect(problems).toEqual([]);
    await page.close();
    replay.child.kill('SIGINT');
    expect((await replay.exit).code).toBe(0);
  }, 120_000);

  it('lorafleet dashboard refuses a non-loopback address without --token, and a missing run', async () => {
    const open = start(['dashboard', '--run', out(), '--listen', '0.0.0.0:0']);
    await expect(open.url).rejects.toThrow(/exited 2/);
    expect((await open.exit).stderr).toMatch(
      /0\.0\.0\.0:0 is reachable from other machines: add --token TOKEN/,
    );
    const missing = start(['dashboard', '--run', join(dir!, 'nothing')]);
    await expect(missing.url).rejects.toThrow(/exited 2/);
    expect((await missing.exit).stderr).toMatch(
      /no .*events\.jsonl: --run must be the --out folder/,
    );
  });
});
