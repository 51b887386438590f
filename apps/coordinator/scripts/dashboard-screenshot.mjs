#!/usr/bin/env node
// A screenshot of a live (or replayed) dashboard, for the README:
//   node apps/coordinator/scripts/dashboard-screenshot.mjs URL OUT.png [--points N]
// Waits until the loss chart has N points (default 40), then saves a
// full-page PNG. Needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { points: { type: 'string', default: '40' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help || positionals.length !== 2) {
  console.log('usage: dashboard-screenshot.mjs URL OUT.png [--points N]');
  process.exit(values.help ? 0 : 2);
}
const [url, out] = positionals;
const profile = mkdtempSync(join(tmpdir(), 'lorafleet-shot-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 1000 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  const want = Number(values.points);
  const chart = page.locator('[data-testid="loss-chart"]');
  const deadline = performance.now() + 600_000;
  while (Number(await chart.getAttribute('data-points').catch(() => 0)) < want) {
    if (performance.now() > deadline)
      throw new Error(`fewer than ${want} loss points after 10 min`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await page.screenshot({ path: out, fullPage: true });
  console.log(`saved ${out}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
