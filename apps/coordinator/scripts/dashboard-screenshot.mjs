#!/usr/bin/env node
// Remakes docs/dashboard.png, the README's picture of the dashboard: runs the
// main job (main-job.mjs, which serves the dashboard at 127.0.0.1:7777),
// opens the dashboard in Chromium (playwright-core, /usr/bin/chromium) and
// takes the whole page once the run reaches step 75 of 120. Needs the build
// (`pnpm build`) and Chromium (`scripts/test-machine.sh` installs it).
//   node apps/coordinator/scripts/dashboard-screenshot.mjs [OUT.png]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const out = process.argv[2] ?? join(root, 'docs', 'dashboard.png');
const STEP = 75;

const job = spawn(process.execPath, [join(root, 'apps/coordinator/scripts/main-job.mjs')], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
});
const ended = new Promise((resolve) => job.on('exit', resolve));
const profile = await mkdtemp(join(tmpdir(), 'lorafleet-screenshot-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
  viewport: { width: 1440, height: 1000 },
});
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  // The dashboard starts with the run: retry until it answers.
  for (let tries = 0; ; tries++) {
    try {
      await page.goto('http://127.0.0.1:7777/');
      break;
    } catch (error) {
      if (tries > 300) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  await page.waitForFunction(
    (step) => globalThis.document.body.innerText.includes(`step ${step} / `),
    STEP,
    {
      timeout: 600_000,
      polling: 200,
    },
  );
  await page.waitForTimeout(500); // the charts draw on the next frame
  await page.screenshot({ path: out, fullPage: true });
  console.error(`dashboard-screenshot: wrote ${out} at step ${STEP}`);
} finally {
  await browser.close();
  await rm(profile, { recursive: true, force: true });
}
console.error(`dashboard-screenshot: the main job exited with ${await ended}`);
