// Nothing silent, nothing lost (#18): a diverged run fails and writes no
// adapter; --out never mixes two runs; contradicting options are refused
// naming both; SIGTERM saves, stops the workers and exits 143. Real processes
// of the built CLI on a tiny model.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  SEQ_LEN,
  ensureBuilt,
  freePort,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  readJson,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string;
let model: string;
let data: string;
const base = () => ['--model', model, '--data', data, '--seq-len', SEQ_LEN, '--batch-size', '4'];

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('guards');
  model = await initTinyModel(dir, 'tiny');
  data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(40));
}, 120_000);

afterAll(() => removeDir(dir));

describe('a diverged run', () => {
  it('stops with exit 1 naming the step and the cause, keeps its checkpoints, writes no adapter', async () => {
    const out = join(dir, 'diverged');
    const args = [
      ...base(),
      '--out',
      out,
      '--steps',
      '6',
      '--lr',
      '1e30',
      '--checkpoint-every',
      '1',
    ];
    const { code, stderr } = await lorafleet(['train', ...args]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/step \d+: the run diverged: .*--lr 1e\+30/);
    expect(existsSync(join(out, 'adapter'))).toBe(false);
    // The first update makes the weights huge but finite: its checkpoint is there, and named.
    const kept = await readdir(join(out, 'checkpoints'));
    expect(kept.length).toBeGreaterThan(0);
    expect(stderr).toContain(`the last checkpoint (`);
  });
});

describe('--out', () => {
  it('refuses a folder that holds an earlier run, unless --overwrite', async () => {
    const out = join(dir, 'twice');
    await lorafleetOk(['train', ...base(), '--out', out, '--steps', '2']);
    const again = await lorafleet(['train', ...base(), '--out', out, '--steps', '3']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/holds an earlier run .*--resume.*--overwrite/);
    expect(again.stderr).toContain(`continue it with --resume ${out},`); // the command to type
    await lorafleetOk(['train', ...base(), '--out', out, '--steps', '3', '--overwrite']);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { step: number }).step)).toEqual([1, 2, 3]);
  });

  it('refuses a file as --out before loading anything', async () => {
    const { code, stderr } = await lorafleet(['train', ...base(), '--out', data, '--steps', '1']);
    expect(code).toBe(2);
    expect(stderr).toContain(`--out ${data} is a file, not a folder`);
  });
});

describe('options that contradict each other', () => {
  const cases: [string, string[], RegExp][] = [
    [
      '--workers with --listen',
      ['--workers', '2', '--listen', 'tcp://127.0.0.1:0', '--expect', '2'],
      /--workers and --listen/,
    ],
    [
      '--full-finetune with --lora-r',
      ['--full-finetune', '--lora-r', '4'],
      /--full-finetune and --lora-r/,
    ],
    [
      '--prompt-template without its columns',
      ['--prompt-template', 'Q: {question}\n'],
      /--prompt-template builds the prompt of prompt\/completion rows: give --prompt-column and --completion-column with it/,
    ],
    [
      '--text-column with a text document',
      ['--text-column', 'text', '--format', 'text'],
      /--text-column and --format contradict each other: --text-column is for CSV and JSONL files, and .* is read as one text document/,
    ],
    ['--lora-r beyond the module', ['--lora-r', '64'], /--lora-r 64 exceeds .* use --lora-r <= 32/],
    [
      '--gradient-accumulation-steps with --batch-size',
      ['--gradient-accumulation-steps', '2', '--micro-batch-size', '2', '--batch-size', '8'],
      /--batch-size and --gradient-accumulation-steps contradict each other/,
    ],
    [
      '--gradient-accumulation-steps without --micro-batch-size',
      ['--gradient-accumulation-steps', '2'],
      /--gradient-accumulation-steps needs --micro-batch-size \(transformers' per_device_train_batch_size\)/,
    ],
    [
      '--optim not among the optimizers',
      ['--optim', 'galore_adamw'],
      /--optim galore_adamw: not an optimizer this trains with; use one of adamw_torch, .*, sgd, adagrad, rmsprop, adafactor, lion_32bit/,
    ],
    [
      '--optim-args a key the optimizer does not read',
      ['--optim', 'sgd', '--optim-args', 'momentum=0.9,betas=0.1'],
      /--optim-args betas: sgd takes momentum, dampening, nesterov here/,
    ],
    [
      'reduce_lr_on_plateau without evaluations',
      ['--schedule', 'reduce_lr_on_plateau'],
      /--schedule reduce_lr_on_plateau needs --eval-every N or --eval-strategy epoch/,
    ],
    [
      'reduce_lr_on_plateau with a factor of 1',
      ['--schedule', 'reduce_lr_on_plateau', '--lr-scheduler-kwargs', '{"factor": 1}'],
      /--lr-scheduler-kwargs factor for --schedule reduce_lr_on_plateau must be in \[0, 1\), got 1/,
    ],
    ['--adam-beta2 of 1', ['--adam-beta2', '1'], /--adam-beta2 1: it must be in \[0, 1\)/],
    ['--adam-epsilon of 0', ['--adam-epsilon', '0'], /--adam-epsilon 0: it must be > 0/],
    [
      '--warmup-steps neither whole nor a share',
      ['--warmup-steps', '2.5'],
      /--warmup-steps 2.5: give whole steps, or a share of the steps below 1/,
    ],
  ];
  it.each(cases)('%s', async (_, extra, message) => {
    const out = join(dir, `clash-${extra[0]}`);
    const { code, stderr } = await lorafleet(['train', ...base(), '--out', out, ...extra]);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });

  it('reads --lr -1 as a negative number and refuses it by its range', async () => {
    const { code, stderr } = await lorafleet([
      'train',
      ...base(),
      '--out',
      join(dir, 'neg'),
      '--lr',
      '-1',
    ]);
    expect(code).toBe(2);
    expect(stderr).toContain('--lr must be >= 0, got "-1"');
  });
});

describe('SIGTERM', () => {
  it('before the first step (workers still joining) stops at once: nothing to save', async () => {
    // --listen with no worker coming: the coordinator waits for joins until the signal.
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'apps/coordinator/bin/lorafleet.js'),
        'train',
        ...base(),
        ...['--out', join(dir, 'term-early'), '--steps', '10'],
        ...['--listen', `tcp://127.0.0.1:${port}`, '--expect', '2'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const deadline = Date.now() + 30_000;
    while (!/waiting for workers/.test(stderr)) {
      if (Date.now() > deadline) throw new Error(`no join wait within 30 s:\n${stderr}`);
      await sleep(50);
    }
    const sent = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    // It used to wait out the 25 s grace meant for saving a step.
    expect(Date.now() - sent).toBeLessThan(5_000);
    expect(stderr).toContain('SIGTERM before the first step: nothing to save; stopping now');
  });

  it('finishes the step, saves a checkpoint, stops the workers and exits 143', async () => {
    const out = join(dir, 'term');
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'apps/coordinator/bin/lorafleet.js'),
        'train',
        ...base(),
        '--out',
        out,
        '--steps',
        '100000',
        '--workers',
        '2',
        '--lora-dropout',
        '0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    );
    const metrics = join(out, 'metrics.jsonl');
    const deadline = Date.now() + 60_000;
    while (!(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 3)) {
      if (Date.now() > deadline) throw new Error(`no steps within 60 s:\n${stderr}`);
      await sleep(100);
    }
    const pids = [...stderr.matchAll(/\(pid (\d+)\) said Hello/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(2);
    const sent = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(Date.now() - sent).toBeLessThan(25_000);
    expect(stderr).toContain('SIGTERM: finishing this step');
    const summary = await readJson<{ steps: number; interrupted: boolean }>(
      join(out, 'summary.json'),
    );
    expect(summary.interrupted).toBe(true);
    const checkpoints = await readdir(join(out, 'checkpoints'));
    expect(checkpoints).toContain(`step-${String(summary.steps).padStart(6, '0')}`);
    expect(existsSync(join(out, 'adapter', 'adapter_model.safetensors'))).toBe(true);
    // The workers were shut down, not orphaned.
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});
