// `lorafleet train` against transformers' Trainer with PEFT, as users run
// them today: a GPT-2 that transformers makes, a LoRA adapter trained a
// little by lorafleet, then trained further by both from the same values
// (`--init-adapter`; PeftModel.from_pretrained(..., is_trainable=True)) with
// AdamW, warmup and linear decay, weight decay and clipping, on 1 and 2
// workers. Each step's loss and the final adapter must agree
// (test/reference/peft_trainer.py; the reference stack of
// scripts/reference-python.sh). Needs the build.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '@lorafleet/core';
import { referencePython } from '@lorafleet/core/testing';

const root = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'lorafleet-trainer-'));
const CLI = join(root, 'apps/coordinator/bin/lorafleet.js');
const STEPS = 4;
/** Every row in every step (batch = the data): the order of rows cannot matter. */
const ROWS = 8;
const SEQ = 32;

function run(command: string, args: string[]): string {
  const r = spawnSync(command, args, { cwd: root, encoding: 'utf8', timeout: 240_000 });
  expect(r.status, `${command} ${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}
const rowArgs = (data: string) => [
  ...['--data', data, '--batch-size', String(ROWS), '--seq-len', String(SEQ)],
  ...['--packing', 'pad', '--lora-dropout', '0', '--no-dashboard'],
];

describe('lorafleet train against transformers Trainer + PEFT', () => {
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('trains an adapter further (--init-adapter) to the adapter Trainer trains, step losses equal, 1 and 2 workers', () => {
    const model = join(out, 'tiny');
    run(referencePython(), ['test/gpu/reference.py', 'make-tiny', '--dir', model]);
    const rng = new Rng(3);
    const data = join(out, 'rows.jsonl');
    const rows = Array.from({ length: ROWS }, () =>
      JSON.stringify({
        input_ids: Array.from({ length: SEQ }, () => Math.floor(rng.uniform() * 256)),
      }),
    );
    writeFileSync(data, rows.join('\n') + '\n');
    // A start away from B = 0: two steps of lorafleet's own.
    run(process.execPath, [
      CLI,
      'train',
      '--model',
      model,
      ...rowArgs(data),
      '--out',
      join(out, 'init'),
      '--steps',
      '2',
      '--lora-r',
      '4',
      '--target',
      'c_attn,c_proj,c_fc',
      '--lr',
      '0.02',
    ]);
    const init = join(out, 'init', 'adapter');
    const settings = { steps: STEPS, lr: 0.01, warmup: 1, weightDecay: 0.01, maxGradNorm: 1.0 };
    const said: Record<number, string> = {};
    for (const workers of [1, 2]) {
      said[workers] = run(process.execPath, [
        CLI,
        'train',
        '--model',
        model,
        ...rowArgs(data),
        '--out',
        join(out, `w${workers}`),
        '--init-adapter',
        init,
        '--workers',
        String(workers),
        '--steps',
        String(STEPS),
        '--lr',
        String(settings.lr),
        '--warmup-steps',
        String(settings.warmup),
        '--schedule',
        'linear',
        '--weight-decay',
        String(settings.weightDecay),
        '--max-grad-norm',
        String(settings.maxGradNorm),
      ]);
    }
    expect(said[1]).toContain(`starting from the adapter ${init}`);
    const spec = join(out, 'spec.json');
    const folders = [1, 2].map((w) => join(out, `w${w}`, 'adapter'));
    writeFileSync(
      spec,
      JSON.stringify({ model, adapter: init, data, ...settings, compare: folders }),
    );
    const printed = run(referencePython(), ['test/reference/peft_trainer.py', spec])
      .trim()
      .split('\n');
    const trainer = JSON.parse(printed.at(-1)!) as {
      losses: number[];
      moved: number;
      compare: Record<
        string,
        { maxAbsDiff: number; elements: number; over1PercentOfMoved: number }
      >;
    };

    expect(trainer.losses).toHaveLength(STEPS);
    expect(trainer.moved).toBeGreaterThan(0.01); // the steps moved the adapter (lr 0.01 after warmup)
    for (const workers of [1, 2]) {
      const losses = readFileSync(join(out, `w${workers}`, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step?: number; loss?: number })
        .filter((m) => m.step !== undefined && m.loss !== undefined)
        .map((m) => m.loss!);
      expect(losses).toHaveLength(STEPS);
      losses.forEach((l, i) =>
        expect(Math.abs(l - trainer.losses[i]!), `${workers}: step ${i + 1}`).toBeLessThan(1e-4),
      );
      // Every element within 1% of the largest movement but AdamW's few near-zero-gradient
      // ones (float32 here, float64 there), and those within 10% of it.
      const c = trainer.compare[folders[workers - 1]!]!;
      expect(c.over1PercentOfMoved, `${workers} workers`).toBeLessThanOrEqual(c.elements / 1000);
      expect(c.maxAbsDiff, `${workers} workers`).toBeLessThan(0.1 * trainer.moved);
    }
  }, 300_000);
});
