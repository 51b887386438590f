// The dashboard server over real HTTP on 127.0.0.1: the event stream (history,
// then live, resumable, slow readers dropped), the JSON snapshot, /metrics,
// adapter downloads, and the guards (token, read-only, traversal, loopback).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { type IncomingMessage, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Dashboard, startDashboard } from '../src/dashboard/server.js';
import { dashboardDist } from '../src/dashboard/files.js';
import {
  type RunEvent,
  type RunFacts,
  type RunEventInit,
  RunEventLog,
  type WorkerInfo,
} from '../src/observe/events.js';
import { REPO_ROOT, makeTempDir, removeDir } from './helpers.js';

let runDir: string;
const open: Dashboard[] = [];

beforeAll(async () => {
  if (!existsSync(join(dashboardDist(), 'index.html'))) {
    await new Promise<void>((resolve, reject) =>
      execFile(
        'pnpm',
        ['--filter', '@lorafleet/dashboard', 'build'],
        { cwd: REPO_ROOT },
        (err, _out, stderr) =>
          err ? reject(new Error(`building the dashboard failed: ${stderr}`)) : resolve(),
      ),
    );
  }
  runDir = await makeTempDir('dashboard');
  const checkpoint = join(runDir, 'checkpoints', 'step-000002');
  await mkdir(checkpoint, { recursive: true });
  await writeFile(join(checkpoint, 'adapter_config.json'), '{"peft_type":"LORA"}');
  await writeFile(join(checkpoint, 'adapter_model.safetensors'), Buffer.from([1, 2, 3, 4]));
  await writeFile(join(checkpoint, 'optimizer.safetensors'), Buffer.from([9]));
  await writeFile(join(runDir, 'secret.txt'), 'not for download');
}, 120_000);

afterEach(async () => {
  await Promise.all(open.splice(0).map((d) => d.close()));
});

afterAll(() => removeDir(runDir));

function worker(rank: number, status: WorkerInfo['status'] = 'training'): WorkerInfo {
  return {
    rank,
    workerId: `w${rank}`,
    host: 'box',
    pid: 100 + rank,
    device: 'cpu',
    backend: 'wasm',
    status,
    lastHeartbeatMs: 1_700_000_000_000,
    rssBytes: 123_456_789,
    computeMs: 40,
    allReduceMs: 5,
    waitMs: 2,
    ringNext: (rank + 1) % 2,
  };
}

const STEP = {
  type: 'step',
  epoch: 0,
  lr: 1e-3,
  tokens: 192,
  tokensPerSecond: 4000,
  gradNorm: 0.5,
  seconds: 0.05,
} as const;

const FACTS: RunFacts = {
  runId: 'run-1',
  model: 'models/tiny',
  mode: 'lora',
  totalParameters: 35_700,
  trainableParameters: 2_048,
  lora: { r: 8, alpha: 16, dropout: 0, targets: ['c_attn'] },
  backend: 'wasm',
  workers: 2,
  steps: 40,
  batchSize: 6,
  seqLen: 32,
  wireBytesPerStep: 8_192,
  fullFinetuneWireBytesPerStep: 142_800,
};

/** A log with a run's first events: facts, two steps, an eval, two workers, a checkpoint. */
function sampleLog(): RunEventLog {
  const events = RunEventLog.memory();
  const init: RunEventInit[] = [
    { type: 'run', facts: FACTS },
    { ...STEP, step: 1, loss: 5.5 },
    { ...STEP, step: 2, loss: 5.25 },
    { type: 'eval', step: 2, loss: 5.4 },
    { type: 'workers', generation: 1, workers: [worker(0), worker(1)] },
    { type: 'checkpoint', step: 2, path: join(runDir, 'checkpoints', 'step-000002') },
  ];
  for (const event of init) events.emit(event);
  return events;
}

async function serve(
  events: RunEventLog,
  more: Partial<Parameters<typeof startDashboard>[0]> = {},
): Promise<Dashboard> {
  const dashboard = await startDashboard({
    events,
    listen: '127.0.0.1:0',
    runDir,
    log: () => undefined,
    ...more,
  });
  open.push(dashboard);
  return dashboard;
}

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** One raw HTTP request (the path is sent as given, not normalized). */
function fetchRaw(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

interface SseMessage {
  event: string;
  id?: string;
  data: string;
}

/** An open event stream: the messages and comments so far, and a way to wait for more. */
function openStream(base: string, headers: Record<string, string> = {}) {
  const url = new URL(base);
  const messages: SseMessage[] = [];
  let comments = 0;
  let buffer = '';
  let response: IncomingMessage | undefined;
  const req = request(
    { host: url.hostname, port: url.port, path: `/api/events${url.search}`, headers },
    (res) => {
      response = res;
      res.setEncoding('utf8').on('data', (text: string) => {
        buffer += text;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message: SseMessage = { event: 'message', data: '' };
          let fields = 0;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments++;
            const m = /^(event|id|data): ?(.*)$/.exec(line);
            if (!m) continue;
            fields++;
            if (m[1] === 'data') message.data += m[2];
            else message[m[1] as 'event' | 'id'] = m[2]!;
          }
          if (fields > 0) messages.push(message);
        }
      });
    },
  );
  req.end();
  const events = () =>
    messages.filter((m) => m.event === 'message').map((m) => JSON.parse(m.data) as RunEvent);
  return {
    messages,
    events,
    comments: () => comments,
    response: () => response,
    until: (check: () => boolean) =>
      vi.waitFor(() => expect(check()).toBe(true), { timeout: 5000, interval: 20 }),
    close: () => req.destroy(),
  };
}

describe('GET /api/events', () => {
  it('sends the history, then live events, then heartbeats; unsubscribes when the client goes', async () => {
    const events = sampleLog();
    const unsubscribed = vi.fn();
    const subscribe = events.subscribe.bind(events);
    vi.spyOn(events, 'subscribe').mockImplementation((listener) => {
      const off = subscribe(listener);
      return () => {
        unsubscribed();
        return off();
      };
    });
    const dashboard = await serve(events, { streamLimits: { heartbeatMs: 50 } });
    const stream = openStream(dashboard.url);
    await stream.until(() => stream.events().length === 6);
    expect(stream.response()!.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(stream.response()!.headers['cache-control']).toBe('no-store');
    expect(stream.messages[0]!.event).toBe('reset');
    expect(stream.events().map((e) => e.type)).toEqual([
      'run',
      'step',
      'step',
      'eval',
      'workers',
      'checkpoint',
    ]);

    events.emit({ ...STEP, step: 3, loss: 5.0 });
    await stream.until(() => stream.events().length === 7);
    expect(stream.events()[6]).toMatchObject({ type: 'step', step: 3, loss: 5.0 });
    await stream.until(() => stream.comments() >= 2);

    stream.close();
    await vi.waitFor(() => expect(unsubscribed).toHaveBeenCalledTimes(1));
  });

  it('resumes after Last-Event-ID without repeating events', async () => {
    const events = sampleLog();
    const dashboard = await serve(events);
    const first = openStream(dashboard.url);
    await first.until(() => first.events().length === 6);
    const lastId = first.messages.at(-1)!.id!;
    first.close();
    events.emit({ ...STEP, step: 3, loss: 5.0 });

    const again = openStream(dashboard.url, { 'Last-Event-ID': lastId });
    await again.until(() => again.events().length === 1);
    expect(again.events()[0]).toMatchObject({ type: 'step', step: 3 });
    expect(again.messages.some((m) => m.event === 'reset')).toBe(false);
    again.close();

    // An id from another server (a restarted coordinator) starts over.
    const other = openStream(dashboard.url, { 'Last-Event-ID': 'feedface-3' });
    await other.until(() => other.events().length === 7);
    expect(other.messages[0]!.event).toBe('reset');
    other.close();
  });

  it('drops a client that stops reading instead of buffering for it', async () => {
    const events = sampleLog();
    const log = vi.fn();
    const dashboard = await serve(events, { log, streamLimits: { stallMs: 200 } });
    const url = new URL(dashboard.url);
    let closed = false;
    const req = request({ host: url.hostname, port: url.port, path: '/api/events' }, (res) => {
      res.pause(); // never reads
      res.on('close', () => (closed = true));
    });
    req.end();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Far more than the socket buffers hold: the server must stop writing and drop the client.
    const big = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 200; i++) events.emit({ type: 'log', level: 'info', message: big });
    await vi.waitFor(
      () =>
        expect(log).toHaveBeenCalledWith(
          expect.stringMatching(/dropped an event stream that stopped reading/),
        ),
      { timeout: 5000 },
    );
    req.destroy();
    await vi.waitFor(() => expect(closed).toBe(true));
  });
});

describe('GET /api/state and /metrics', () => {
  it('returns the run as of its latest event, with the adapters on disk', async () => {
    const dashboard = await serve(sampleLog());
    const reply = await fetchRaw(dashboard.url, '/api/state');
    expect(reply.status).toBe(200);
    expect(reply.headers['cache-control']).toBe('no-store');
    const { state, downloads } = JSON.parse(reply.body.toString()) as {
      state: {
        facts: { runId: string };
        lastStep: { step: number };
        tokens: number;
        workers: unknown[];
      };
      downloads: unknown[];
    };
    expect(state.facts.runId).toBe('run-1');
    expect(state.lastStep.step).toBe(2);
    expect(state.tokens).toBe(384);
    expect(state.workers).toHaveLength(2);
    expect(downloads).toEqual([
      { name: 'step-000002', step: 2, files: ['adapter_config.json', 'adapter_model.safetensors'] },
    ]);
  });

  /** The /metrics samples, by name and labels. */
  async function scrape(url: string): Promise<Map<string, number>> {
    const reply = await fetchRaw(url, '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = new Map<string, number>();
    for (const line of reply.body.toString().split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
      expect(m, `not a sample line: ${line}`).not.toBeNull();
      samples.set(m![1]!, Number(m![2]));
    }
    return samples;
  }

  it("counts a DPO run's throughput in pairs, and gives its training and held-out reward figures", async () => {
    const events = RunEventLog.memory();
    const dashboard = await serve(events);
    events.emit({ type: 'run', facts: { ...FACTS, lossUnit: 'pairs' } });
    events.emit({
      ...{ ...STEP, step: 1, loss: 0.69, tokens: 6, tokensPerSecond: 11 },
      ...{ rewardAccuracy: 0.625, rewardMargin: 1.5 },
    });
    events.emit({ type: 'eval', step: 1, loss: 0.6, rewardAccuracy: 0.75 });
    const samples = await scrape(dashboard.url);
    expect(Object.fromEntries(samples)).toMatchObject({
      lorafleet_pairs_per_second: 11,
      lorafleet_pairs_total: 6,
      lorafleet_tokens_total: 0,
      lorafleet_reward_accuracy: 0.625,
      lorafleet_reward_margin: 1.5,
      lorafleet_eval_reward_accuracy: 0.75,
    });
    expect(samples.get('lorafleet_tokens_per_second')).toBe(0); // prom-client keeps a reset gauge at 0
  });

  it('serves the figures in Prometheus text format', async () => {
    const events = sampleLog();
    const dashboard = await serve(events);
    events.emit({ type: 'workers', generation: 2, workers: [worker(0), worker(1, 'lost')] });
    const samples = await scrape(dashboard.url);
    expect(samples.get('lorafleet_pairs_per_second')).toBe(0);
    expect(samples.get('lorafleet_pairs_total')).toBe(0);
    expect(samples.get('lorafleet_eval_reward_accuracy')).toBe(0);
    expect(samples.get('lorafleet_reward_accuracy')).toBe(0);
    expect(samples.get('lorafleet_reward_margin')).toBe(0);
    expect(Object.fromEntries(samples)).toMatchObject({
      lorafleet_step: 2,
      lorafleet_train_loss: 5.25,
      lorafleet_eval_loss: 5.4,
      lorafleet_learning_rate: 1e-3,
      lorafleet_tokens_per_second: 4000,
      lorafleet_tokens_total: 384,
      lorafleet_workers: 1,
      lorafleet_ring_generation: 2,
      lorafleet_checkpoints_total: 1,
      'lorafleet_parameters{kind="trainable"}': 2048,
      'lorafleet_parameters{kind="total"}': 35_700,
      'lorafleet_wire_bytes_per_step{mode="lora"}': 8192,
      'lorafleet_wire_bytes_per_step{mode="full"}': 142_800,
      'lorafleet_worker_up{rank="0"}': 1,
      'lorafleet_worker_up{rank="1"}': 0,
      'lorafleet_worker_memory_bytes{rank="1"}': 123_456_789,
      'lorafleet_worker_step_phase_seconds{rank="0",phase="compute"}': 0.04,
      'lorafleet_worker_step_phase_seconds{rank="0",phase="allreduce"}': 0.005,
      'lorafleet_worker_step_phase_seconds{rank="0",phase="wait"}': 0.002,
    });
  });
});

describe('static files and downloads', () => {
  it('serves the built page with a strict Content-Security-Policy, and HEAD without a body', async () => {
    const dashboard = await serve(sampleLog());
    const page = await fetchRaw(dashboard.url, '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body.toString()).toMatch(/<script type="module"[^>]* src="\.\/assets\//);
    expect(page.body.toString()).not.toMatch(/https?:\/\//); // nothing from a CDN
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    const script = /src="\.(\/assets\/[^"]+\.js)"/.exec(page.body.toString())![1]!;
    expect((await fetchRaw(dashboard.url, script)).headers['content-type']).toMatch(
      /^text\/javascript/,
    );
    const head = await fetchRaw(dashboard.url, '/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
  });

  it('downloads adapter files of a checkpoint on disk', async () => {
    const dashboard = await serve(sampleLog());
    const reply = await fetchRaw(
      dashboard.url,
      '/api/checkpoints/step-000002/adapter_model.safetensors',
    );
    expect(reply.status).toBe(200);
    expect([...reply.body]).toEqual([1, 2, 3, 4]);
    expect(reply.headers['content-disposition']).toBe(
      'attachment; filename="adapter_model.safetensors"',
    );
    expect(
      (await fetchRaw(dashboard.url, '/api/checkpoints/adapter/adapter_config.json')).status,
    ).toBe(404); // no final adapter yet
  });

  it('does not follow a checkpoint folder that is a symlink to outside the run', async () => {
    const outside = await makeTempDir('dashboard-outside');
    try {
      await writeFile(join(outside, 'adapter_config.json'), '{"outside":"the run"}');
      await writeFile(join(outside, 'adapter_model.safetensors'), 'secret weights');
      const linkedRun = await makeTempDir('dashboard-linked');
      await mkdir(join(linkedRun, 'checkpoints'));
      await symlink(outside, join(linkedRun, 'checkpoints', 'step-000009'));
      // A whole checkpoints folder that is a link to outside: refused too.
      const viaFolder = await makeTempDir('dashboard-linked-folder');
      await symlink(join(linkedRun, 'checkpoints'), join(viaFolder, 'checkpoints'));
      for (const dir of [linkedRun, viaFolder]) {
        const dashboard = await serve(sampleLog(), { runDir: dir });
        for (const file of ['adapter_config.json', 'adapter_model.safetensors']) {
          const reply = await fetchRaw(dashboard.url, `/api/checkpoints/step-000009/${file}`);
          expect(reply.status, `${dir} ${file}`).toBe(404);
          expect(reply.body.toString()).not.toContain('secret weights');
          expect(reply.body.toString()).not.toContain('outside');
        }
        const state = await fetchRaw(dashboard.url, '/api/state');
        expect(JSON.parse(state.body.toString()).downloads).toEqual([]);
      }
      await removeDir(linkedRun);
      await removeDir(viaFolder);
    } finally {
      await removeDir(outside);
    }
  });

  it('serves a run whose own folder is reached through a symlink', async () => {
    const linkDir = await makeTempDir('dashboard-link-to-run');
    try {
      const link = join(linkDir, 'run');
      await symlink(runDir, link);
      const dashboard = await serve(sampleLog(), { runDir: link });
      const reply = await fetchRaw(
        dashboard.url,
        '/api/checkpoints/step-000002/adapter_model.safetensors',
      );
      expect(reply.status).toBe(200);
      expect([...reply.body]).toEqual([1, 2, 3, 4]);
    } finally {
      await removeDir(linkDir);
    }
  });

  it.each([
    '/api/checkpoints/step-000002/optimizer.safetensors',
    '/api/checkpoints/..%2F..%2F/secret.txt',
    '/api/checkpoints/step-000002/..%2F..%2Fsecret.txt',
    '/api/checkpoints/%2E%2E/secret.txt',
    '/api/checkpoints/step-000002/%2e%2e%2f%2e%2e%2fsecret.txt',
    '/assets/../../package.json',
    '/../package.json',
    '/%2e%2e/%2e%2e/package.json',
    '/api/nothing',
  ])('refuses %s', async (path) => {
    const dashboard = await serve(sampleLog());
    const reply = await fetchRaw(dashboard.url, path);
    expect(reply.status).toBe(404);
    expect(reply.body.toString()).not.toContain('not for download');
  });
});

describe('guards', () => {
  it('is read-only: 405 for anything but GET and HEAD', async () => {
    const dashboard = await serve(sampleLog());
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const reply = await fetchRaw(dashboard.url, '/api/state', { method });
      expect(reply.status, method).toBe(405);
      expect(reply.headers.allow).toBe('GET, HEAD');
    }
  });

  it('with a token: 401 without it or with a wrong one; 200 with ?token=, a Bearer header or the page cookie', async () => {
    const dashboard = await serve(sampleLog(), { token: 's3cret token' });
    expect(dashboard.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=s3cret%20token$/);
    for (const path of [
      '/',
      '/api/state',
      '/api/events',
      '/metrics',
      '/api/checkpoints/step-000002/adapter_config.json',
    ]) {
      const reply = await fetchRaw(dashboard.url, path);
      expect(reply.status, path).toBe(401);
      expect(reply.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    expect((await fetchRaw(dashboard.url, '/api/state?token=s3cret')).status).toBe(401);
    expect(
      (await fetchRaw(dashboard.url, '/metrics', { headers: { Authorization: 'Bearer wrong' } }))
        .status,
    ).toBe(401);
    expect(
      (
        await fetchRaw(dashboard.url, '/metrics', {
          headers: { Authorization: 'Bearer s3cret token' },
        })
      ).status,
    ).toBe(200);
    const page = await fetchRaw(dashboard.url, '/?token=s3cret%20token');
    expect(page.status).toBe(200);
    const cookie = String(page.headers['set-cookie']).split(';')[0]!;
    expect(page.headers['set-cookie']?.[0]).toMatch(/HttpOnly; SameSite=Strict/);
    expect(
      (await fetchRaw(dashboard.url, '/api/state', { headers: { Cookie: cookie } })).status,
    ).toBe(200);

    const stream = openStream(dashboard.url);
    await stream.until(() => stream.events().length === 6);
    stream.close();
  });

  it('refuses to listen beyond loopback without a token, and allows it with one', async () => {
    await expect(serve(sampleLog(), { listen: '0.0.0.0:0' })).rejects.toThrow(
      /0\.0\.0\.0:0 is reachable from other machines; set --dashboard-token/,
    );
    await expect(serve(sampleLog(), { listen: '[::]:0' })).rejects.toThrow(/--dashboard-token/);
    await expect(serve(sampleLog(), { listen: 'example.com:0' })).rejects.toThrow(
      /--dashboard-token/,
    );
    const dashboard = await serve(sampleLog(), { listen: '0.0.0.0:0', token: 't' });
    const port = new URL(dashboard.url).port;
    expect((await fetchRaw(`http://127.0.0.1:${port}/`, '/metrics?token=t')).status).toBe(200);
    expect((await fetchRaw(`http://127.0.0.1:${port}/`, '/metrics')).status).toBe(401);
  });

  it('without a token, answers only requests addressed to a loopback host (DNS rebinding)', async () => {
    const dashboard = await serve(sampleLog());
    expect(
      (await fetchRaw(dashboard.url, '/api/state', { headers: { Host: 'attacker.example:80' } }))
        .status,
    ).toBe(403);
    expect(
      (await fetchRaw(dashboard.url, '/api/state', { headers: { Host: 'localhost:7777' } })).status,
    ).toBe(200);
  });

  it('says what is wrong with a bad listen address, a busy port or a missing build', async () => {
    await expect(serve(sampleLog(), { listen: '127.0.0.1' })).rejects.toThrow(/expected HOST:PORT/);
    const busy = await serve(sampleLog());
    await expect(
      serve(sampleLog(), { listen: `127.0.0.1:${new URL(busy.url).port}` }),
    ).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    await expect(serve(sampleLog(), { staticDir: join(runDir, 'no-dist') })).rejects.toThrow(
      /the web app is not built .*: run pnpm build/,
    );
  });
});
