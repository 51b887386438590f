// `lorafleet train --listen ... --curve-key --authorized-keys` with real
// processes: workers with listed keys train over CURVE on both planes; a
// worker whose key is not listed never joins.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_DROPOUT_CONFIG,
  REPO_ROOT,
  WORKER_BIN,
  ensureBuilt,
  freePort,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  removeDir,
  writeJsonl,
} from './helpers.js';

const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

let dir: string;
let model: string;
let data: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('curve');
  model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  data = await writeJsonl(
    join(dir, 'train.jsonl'),
    Array.from({ length: 30 }, (_, i) => ({ text: `abc abc ${i % 5} abcabc line ${i}.` })),
  );
  for (const name of ['coordinator', 'w1', 'w2', 'stranger']) {
    await lorafleetOk(['keys', '--out', join(dir, 'keys'), '--name', name]);
  }
  // The coordinator admits w1 and w2 only.
  await mkdir(join(dir, 'authorized'));
  for (const name of ['w1', 'w2']) {
    await rename(join(dir, 'keys', `${name}.pub`), join(dir, 'authorized', `${name}.pub`));
  }
}, 120_000);

afterAll(async () => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
  await removeDir(dir);
});

function start(script: string, args: string[]) {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 90_000,
  });
  started.push(child);
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
  const done = new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
  const waitFor = async (pattern: RegExp) => {
    while (!pattern.test(output)) {
      if (child.exitCode !== null) throw new Error(`exited before ${pattern}: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { done, waitFor, output: () => output };
}

const worker = (endpoint: string, name: string, ...more: string[]) =>
  start(WORKER_BIN, [
    ...['--coordinator', endpoint, '--curve-key', join(dir, 'keys', `${name}.key`)],
    ...['--server-key', join(dir, 'keys', 'coordinator.pub'), ...more],
  ]);

describe('train --listen with CURVE', () => {
  it('admits listed worker keys only, and trains over CURVE on both planes', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const coordinator = start(CLI_BIN, [
      'train',
      ...['--model', model, '--data', data, '--out', join(dir, 'run')],
      ...['--steps', '6', '--batch-size', '4', '--lora-dropout', '0'],
      ...['--listen', endpoint, '--expect', '2'],
      ...['--curve-key', join(dir, 'keys', 'coordinator.key')],
      ...['--authorized-keys', join(dir, 'authorized')],
    ]);
    await coordinator.waitFor(/waiting for workers: 0\/2/);
    // A stranger first: refused at the handshake, it never counts as a worker.
    const stranger = worker(endpoint, 'stranger', '--timeout', '3');
    const refused = await stranger.done;
    expect(refused.code).toBe(1);
    expect(refused.output).toMatch(/refused this worker's CURVE key/);
    expect(coordinator.output()).toMatch(/is not admitted|not in --authorized-keys/);
    expect(coordinator.output()).not.toMatch(/waiting for workers: 1\/2/);

    const members = [worker(endpoint, 'w1'), worker(endpoint, 'w2')];
    const result = await coordinator.done;
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/CURVE on: 2 worker key\(s\) admitted/);
    for (const m of members) expect((await m.done).code).toBe(0);
  }, 120_000);

  it('needs both --curve-key and --authorized-keys, and --listen', async () => {
    const base = ['train', '--model', model, '--data', data, '--out', join(dir, 'bad')];
    const half = await lorafleet([
      ...base,
      ...['--listen', 'tcp://127.0.0.1:0', '--expect', '2'],
      ...['--curve-key', join(dir, 'keys', 'coordinator.key')],
    ]);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/--curve-key and --authorized-keys go together/);
    const spawned = await lorafleet([
      ...base,
      ...['--workers', '2', '--curve-key', join(dir, 'keys', 'coordinator.key')],
      ...['--authorized-keys', join(dir, 'authorized')],
    ]);
    expect(spawned.code).toBe(2);
    expect(spawned.stderr).toMatch(/--curve-key is for --listen runs/);
  }, 60_000);
});
