// Running the built `lorafleet` CLI as a real process, in throwaway folders:
// the build check, the spawn wrapper, a tiny model and tiny datasets.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadPeftAdapter } from '@lorafleet/core';

export const REPO_ROOT = join(import.meta.dirname, '..', '..', '..');
const BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');
/** The `lorafleet-worker` daemon's script (run with `lorafleet(args, ms, env, WORKER_BIN)`). */
export const WORKER_BIN = join(REPO_ROOT, 'apps', 'worker', 'bin', 'lorafleet-worker.js');

/** GPT-2 layout, byte tokenizer, 35.7k parameters: a training step takes tens of ms on wasm. */
export const TINY_CONFIG = {
  model_type: 'gpt2',
  vocab_size: 257,
  n_positions: 64,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
};

/**
 * A tiny model with every dropout of the base model off: with dropout, N
 * workers train one's adapter only where their micro-batches hold one's rows
 * (masks are keyed by them: docs/training-step.md#dropout), so equivalence
 * and resume tests use this one (and --lora-dropout 0).
 */
export const NO_DROPOUT_CONFIG = {
  model_type: 'gpt2',
  vocab_size: 257,
  n_positions: 32,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
  embd_pdrop: 0,
  attn_pdrop: 0,
  resid_pdrop: 0,
};

/** A run's checkpoint folder for `step`. */
export function checkpointDir(run: string, step: number): string {
  return join(run, 'checkpoints', `step-${String(step).padStart(6, '0')}`);
}

/** The bytes of a run's final adapter weights. */
export function adapterBytes(run: string): Promise<Buffer> {
  return readFile(join(run, 'adapter', 'adapter_model.safetensors'));
}

/** Rows of 32 tokens: short enough that the ~40-line datasets below give dozens of rows. */
export const SEQ_LEN = '32';

/**
 * How far an adapter trained by 1 worker may be from the same run's on 2
 * (they sum gradients in different orders), after a few AdamW steps at lr
 * 1e-2 or more: AdamW's normalised step amplifies float32 rounding in a few
 * elements. Measured 2026-12-06 on the Llama-family configs: 1e-7 to 1.3e-5,
 * and one element of Phi-3's down_proj A moved by 7.6e-6 when only the SwiGLU
 * kernel's rounding changed (same worker count). A wrong sum is off by 1e-3
 * and more.
 */
export const WORKERS_TOLERANCE = 5e-5;

/** The largest difference between two saved PEFT adapters' A and B values (1 worker against 2), and their largest B. */
export async function adapterGap(
  a: string,
  b: string,
): Promise<{ diff: number; largestB: number }> {
  const [x, y] = await Promise.all([a, b].map((d) => loadPeftAdapter(d)));
  let [diff, largestB] = [0, 0];
  for (const [path, m] of x!.modules) {
    const other = y!.modules.get(path)!;
    m.b.forEach((v, i) => {
      largestB = Math.max(largestB, Math.abs(v));
      diff = Math.max(diff, Math.abs(v - other.b[i]!));
    });
    m.a.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - other.a[i]!))));
  }
  return { diff, largestB };
}

// Vitest runs each test file in its own fork; the first to get the lock builds,
// the others see its stamp (same runner process) and reuse the build.
const LOCK = join(tmpdir(), 'lorafleet-cli-test-build.lock');
const STAMP = join(tmpdir(), 'lorafleet-cli-test-build.stamp');
const STALE_LOCK_MS = 3 * 60_000;

interface BuildStamp {
  repo: string;
  runner: number;
}

function builtByThisRun(): boolean {
  try {
    const stamp = JSON.parse(readFileSync(STAMP, 'utf8')) as BuildStamp;
    return stamp.repo === REPO_ROOT && stamp.runner === process.ppid;
  } catch {
    return false;
  }
}

async function acquireLock(): Promise<void> {
  for (;;) {
    try {
      mkdirSync(LOCK);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        // A lock left by a killed run would otherwise block every later one.
        if (Date.now() - statSync(LOCK).mtimeMs > STALE_LOCK_MS) rmSync(LOCK, { recursive: true });
      } catch {
        // Released between the two calls: try again.
      }
      await sleep(100);
    }
  }
}

/** Builds every package (`pnpm run build`, cached by turbo) once per test run. */
export async function ensureBuilt(): Promise<void> {
  // For a developer who has just built (e.g. a filtered `turbo run build`).
  if (process.env.LORAFLEET_TEST_SKIP_BUILD === '1') return;
  await acquireLock();
  try {
    if (builtByThisRun()) return;
    await new Promise<void>((resolve, reject) => {
      execFile(
        'pnpm',
        ['run', 'build'],
        { cwd: REPO_ROOT, timeout: 300_000, maxBuffer: 16 << 20 },
        (err, stdout, stderr) =>
          err
            ? reject(new Error(`pnpm run build failed: ${err.message}\n${stdout}\n${stderr}`))
            : resolve(),
      );
    });
    const stamp: BuildStamp = { repo: REPO_ROOT, runner: process.ppid };
    writeFileSync(STAMP, JSON.stringify(stamp));
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

export interface CliResult {
  /** Exit status. */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `lorafleet ARGS` (or another script, `bin`) to completion; a non-zero exit is a result, not an error. */
export function lorafleet(
  args: string[],
  timeoutMs = 90_000,
  env: Record<string, string> = {},
  bin = BIN,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      env: { ...process.env, LORAFLEET_DEBUG: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === null) {
        reject(new Error(`lorafleet ${args.join(' ')}: killed by ${signal}\n${stderr}`));
      } else resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `lorafleet ARGS` and fails with its stderr unless it exits 0. */
export async function lorafleetOk(args: string[]): Promise<CliResult> {
  const result = await lorafleet(args);
  if (result.code !== 0) {
    throw new Error(
      `lorafleet ${args.join(' ')} exited ${result.code}\n${result.stderr}\n${result.stdout}`,
    );
  }
  return result;
}

export function makeTempDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `lorafleet-cli-${label}-`));
}

export function removeDir(dir: string | undefined): Promise<void> {
  return dir ? rm(dir, { recursive: true, force: true }) : Promise.resolve();
}

/** `lorafleet init` of the tiny model into DIR/NAME; returns that folder. */
export async function initTinyModel(
  dir: string,
  name: string,
  seed = 0,
  config: object = TINY_CONFIG,
): Promise<string> {
  const configPath = join(dir, `${name}.config.json`);
  await writeFile(configPath, JSON.stringify(config));
  const out = join(dir, name);
  await lorafleetOk(['init', '--config', configPath, '--out', out, '--seed', String(seed)]);
  return out;
}

/**
 * What most CLI tests start from: a temporary folder (makeTempDir(label))
 * with the tiny model in DIR/model (initTinyModel; no dropout unless
 * `config`) and `records` in DIR/train.jsonl.
 */
export async function trainFixture(
  label: string,
  records: readonly unknown[],
  { seed = 0, config = NO_DROPOUT_CONFIG }: { seed?: number; config?: object } = {},
): Promise<{ dir: string; model: string; data: string }> {
  await ensureBuilt();
  const dir = await makeTempDir(label);
  const model = await initTinyModel(dir, 'model', seed, config);
  return { dir, model, data: await writeJsonl(join(dir, 'train.jsonl'), records) };
}

export async function writeJsonl(path: string, records: readonly unknown[]): Promise<string> {
  await writeFile(path, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return path;
}

/**
 * Text a tiny model learns within 20 steps at lr 1e-2: one short pattern
 * repeated, so the byte statistics differ far from the random init's.
 */
export function patternRecords(lines: number): { text: string }[] {
  return Array.from({ length: lines }, () => ({ text: 'abcabcabc abcabc abc abcabcabc abc.' }));
}

/** `lines` numbered variations of one pattern (the distributed tests' training text). */
export function numberedPatternRecords(lines: number): { text: string }[] {
  return Array.from({ length: lines }, (_, i) => ({
    text: `abcabc abc ${i % 7} abcabcabc; line ${i} of the pattern.`,
  }));
}

/**
 * `lines` preference pairs (the preference tests' data): the prompt is a
 * numbered line's first half; chosen: its true end; rejected: that end's
 * words reversed.
 */
export function preferenceRecords(lines: number, offset = 0) {
  return Array.from({ length: lines }, (_, i) => {
    const words = `abc ${(i + offset) % 5} abcabc; line ${i + offset} of the pattern.`;
    const cut = 8;
    const rest = words.slice(cut);
    return {
      prompt: words.slice(0, cut),
      chosen: rest,
      rejected: rest.split(' ').reverse().join(' '),
    };
  });
}

export async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

/** A run folder's metrics.jsonl: one object per step. */
export async function metricLines(run: string): Promise<Record<string, number>[]> {
  const text = await readFile(join(run, 'metrics.jsonl'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
}

/** What `lorafleet eval --json` prints. */
export interface EvalReport {
  loss: number;
  perplexity: number;
  tokens: number;
  /** TRL's SFT metrics: the share of tokens the argmax predicts, and the mean entropy. */
  meanTokenAccuracy: number;
  entropy: number;
  rows: number;
  adaptedModules: number;
}

/** Runs `lorafleet eval --json` and parses its report. */
export async function evalJson(args: string[]): Promise<EvalReport> {
  const { stdout } = await lorafleetOk(['eval', '--json', ...args]);
  return JSON.parse(stdout) as EvalReport;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The preference tests' inputs: a tiny model without dropout, 36 training and 8 held-out pairs, and text lines. */
export async function preferenceFixture(label: string) {
  const { dir, model, data: pairs } = await trainFixture(label, preferenceRecords(36, 0));
  return {
    dir,
    model,
    pairs,
    heldOut: await writeJsonl(join(dir, 'held-out.jsonl'), preferenceRecords(8, 100)),
    text: await writeJsonl(join(dir, 'text.jsonl'), numberedPatternRecords(10)),
  };
}

/** The held-out loss a run printed before or after training (any objective). */
export function heldOutLoss(out: string, when: 'before' | 'after'): number {
  const m = new RegExp(`eval loss ${when}: +([\\d.]+)`).exec(out);
  if (!m) throw new Error(`no "eval loss ${when}" line in:\n${out}`);
  return Number(m[1]);
}

/** The held-out loss, reward accuracy and margin a preference run printed before or after training (8 pairs). */
export function evalOf(out: string, when: 'before' | 'after', name = 'DPO') {
  const m = new RegExp(
    `eval loss ${when}: +([\\d.]+) \\(${name} loss, 8 pairs; reward accuracy ([\\d.]+), margin (-?[\\d.]+)\\)`,
  ).exec(out);
  return { loss: Number(m?.[1]), accuracy: Number(m?.[2]), margin: Number(m?.[3]) };
}
