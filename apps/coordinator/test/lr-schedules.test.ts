// --schedule and --lr-scheduler-kwargs against transformers' own schedules
// (test/reference/lr_schedules.py: get_scheduler with the same name, warmup,
// steps and lr_scheduler_kwargs, stepped as Trainer steps it): the LR of
// every step of every kind equals transformers' (the reference stack of
// scripts/reference-python.sh). How the run reads them: scheduleFrom, then
// core's lrFactor, as the worker's step does.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PLATEAU_DEFAULTS,
  type ScheduleKind,
  initialPlateau,
  lrFactor,
  plateauStep,
  scheduledLr,
  validateSchedule,
} from '@lorafleet/core';
import { referenceJson } from '@lorafleet/core/testing';
import { describe, expect, it } from 'vitest';
import { plateauSettings } from '../src/training/lr-plateau.js';
import type { TrainOptions } from '../src/training/train-spec.js';
import { scheduleFrom } from '../src/training/schedule-options.js';
import {
  SEQ_LEN,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  makeTempDir,
  patternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

interface Case {
  name: ScheduleKind;
  lr: number;
  warmup: number;
  total: number;
  kwargs: Record<string, unknown>;
}

const c = (name: ScheduleKind, warmup: number, total: number, kwargs = {}, lr = 1e-3): Case => ({
  ...{ name, lr, warmup, total, kwargs },
});

const CASES: Case[] = [
  c('linear', 3, 20),
  c('cosine', 2, 20),
  c('cosine', 0, 16, { num_cycles: 1.5 }),
  c('constant', 0, 6), // transformers' constant ignores warmup: compared without one
  c('constant_with_warmup', 4, 10),
  c('cosine_with_min_lr', 3, 20, { min_lr_rate: 0.1 }),
  c('cosine_with_min_lr', 2, 15, { min_lr: 1e-4, num_cycles: 0.75 }),
  c('cosine_warmup_with_min_lr', 3, 20, { min_lr_rate: 0.1 }),
  c('cosine_warmup_with_min_lr', 4, 16, { min_lr: 2e-4, warmup_lr_rate: 0.2, num_cycles: 0.6 }),
  c('cosine_warmup_with_min_lr', 0, 10, { min_lr_rate: 0.05 }),
  c('cosine_with_restarts', 2, 30, { num_cycles: 3 }),
  c('polynomial', 2, 20, { lr_end: 1e-5, power: 2 }),
  c('polynomial', 3, 12),
  c('inverse_sqrt', 5, 30),
  c('inverse_sqrt', 4, 20, { timescale: 8 }),
  c('inverse_sqrt', 0, 10),
  c('warmup_stable_decay', 3, 30, { num_decay_steps: 10 }),
  c('warmup_stable_decay', 4, 30, {
    ...{ num_decay_steps: 8, num_stable_steps: 12, warmup_type: 'cosine' },
    ...{ decay_type: '1-sqrt', min_lr_ratio: 0.05 },
  }),
  c('warmup_stable_decay', 2, 20, {
    num_decay_steps: 6,
    warmup_type: '1-sqrt',
    decay_type: 'linear',
  }),
];

describe('LR schedules', () => {
  it("every kind gives transformers' LR at every step", () => {
    const theirs = referenceJson<number[][]>('lr_schedules', CASES);
    expect(theirs).toHaveLength(CASES.length);
    for (const [i, { name, lr, warmup, total, kwargs }] of CASES.entries()) {
      const schedule = scheduleFrom(name, JSON.stringify(kwargs), {
        warmupSteps: warmup,
        totalSteps: total,
        lr,
      });
      validateSchedule(schedule);
      const ours = Array.from({ length: total }, (_, step) => lr * lrFactor(schedule, step));
      const label = `${name} ${JSON.stringify(kwargs)}`;
      expect(theirs[i], label).toHaveLength(total);
      ours.forEach((rate, step) =>
        expect(Math.abs(rate - theirs[i]![step]!), `${label} step ${step}`).toBeLessThan(1e-15),
      );
    }
    // Every kind is compared.
    expect(new Set(CASES.map((x) => x.name)).size).toBe(10);
  }, 120_000);

  it('reaches the workers: a run logs the LR of each step (2 workers, warmup_stable_decay)', async () => {
    await ensureBuilt();
    const dir = await makeTempDir('lr-schedules');
    try {
      const model = await initTinyModel(dir, 'tiny');
      const data = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(8));
      const kwargs = {
        ...{ num_decay_steps: 3, num_stable_steps: 2, warmup_type: 'cosine' },
        ...{ decay_type: 'linear', min_lr_ratio: 0.2, num_cycles: 0.5 },
      };
      const run = await lorafleet([
        ...['train', '--model', model, '--data', data, '--out', join(dir, 'out')],
        ...['--steps', '8', '--batch-size', '2', '--seq-len', SEQ_LEN, '--workers', '2'],
        ...['--lr', '0.01', '--warmup-steps', '2', '--schedule', 'warmup_stable_decay'],
        ...['--lr-scheduler-kwargs', JSON.stringify(kwargs)],
        ...['--optim', 'paged_adamw_8bit'], // a QLoRA recipe's name: AdamW with float32 state
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain(
        "--optim paged_adamw_8bit: the optimizer state stays in float32 (small for LoRA): the update is the unquantized one's",
      );
      expect(run.stdout).toContain(
        'optimizer: AdamW lr 0.01 (warmup_stable_decay, 2 warmup steps)',
      );
      const logged = (await readFile(join(dir, 'out', 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { lr: number }).lr);
      const schedule = scheduleFrom('warmup_stable_decay', JSON.stringify(kwargs), {
        ...{ warmupSteps: 2, totalSteps: 8, lr: 0.01 },
      });
      expect(logged).toHaveLength(8);
      logged.forEach((lr, step) => expect(lr).toBeCloseTo(0.01 * lrFactor(schedule, step), 12));
      expect(new Set(logged).size).toBeGreaterThan(4); // warmup, stable, decay and the floor
    } finally {
      await removeDir(dir);
    }
  }, 120_000);

  it("reduce_lr_on_plateau: the LR after each evaluation equals torch's ReduceLROnPlateau's", () => {
    const falling = [3, 2.5, 2.4, 2.4, 2.41, 2.39, 2.5, 2.6, 2.2, 2.2, 2.2, 2.2, 2.1, 2.3, 2.3];
    const rising = falling.map((m) => 5 - m); // an accuracy's course
    const cases: { lr: number; kwargs: Record<string, unknown>; metrics: number[] }[] = [
      { lr: 0.01, kwargs: {}, metrics: [...falling, ...falling] },
      { lr: 0.01, kwargs: { patience: 0 }, metrics: falling },
      { lr: 0.01, kwargs: { patience: 1, factor: 0.5 }, metrics: falling },
      { lr: 0.01, kwargs: { patience: 0, threshold: 0.05 }, metrics: falling },
      {
        lr: 0.01,
        kwargs: { patience: 0, threshold: 0.05, threshold_mode: 'abs' },
        metrics: falling,
      },
      { lr: 0.01, kwargs: { patience: 0, cooldown: 2, factor: 0.5 }, metrics: falling },
      { lr: 0.01, kwargs: { patience: 0, factor: 0.1, min_lr: 5e-4 }, metrics: falling },
      { lr: 1e-6, kwargs: { patience: 0, factor: 0.5, eps: 4e-7 }, metrics: falling },
      { lr: 0.01, kwargs: { patience: 0, factor: 0 }, metrics: falling },
      { lr: 0.01, kwargs: { mode: 'max', patience: 1, factor: 0.3 }, metrics: rising },
      { lr: 0.01, kwargs: { mode: 'max', patience: 0, threshold_mode: 'abs' }, metrics: rising },
      { lr: 0.01, kwargs: { mode: 'max', patience: 0 }, metrics: falling }, // the wrong mode
    ];
    const theirs = referenceJson<{ lrs: number[][] }>('plateau', cases).lrs;
    expect(theirs).toHaveLength(cases.length);
    let reduced = 0;
    for (const [i, { lr, kwargs, metrics }] of cases.entries()) {
      const schedule = scheduleFrom('reduce_lr_on_plateau', JSON.stringify(kwargs), {
        ...{ warmupSteps: 0, totalSteps: 100, lr },
      });
      let state = initialPlateau(schedule.plateau!);
      const ours = metrics.map((m) => {
        state = plateauStep(schedule.plateau!, state, m, lr);
        return scheduledLr(lr, schedule, 0, state.reductions);
      });
      expect(ours, JSON.stringify(kwargs)).toEqual(theirs[i]);
      reduced += ours.at(-1)! < lr ? 1 : 0;
    }
    expect(reduced).toBeGreaterThan(8); // the cases reach reductions
  });

  it('reduce_lr_on_plateau warns where transformers would surprise: warmup ignored, a mode against the metric', () => {
    const schedule = scheduleFrom('reduce_lr_on_plateau', undefined, {
      ...{ warmupSteps: 0, totalSteps: 10, lr: 1e-3 },
    });
    const options = (more: Partial<TrainOptions>) =>
      ({ evalEvery: 2, objective: 'sft', warmupSteps: 0, ...more }) as TrainOptions;
    expect(plateauSettings(options({}), schedule)).toEqual({
      settings: PLATEAU_DEFAULTS,
      metric: 'loss',
      warnings: [],
    });
    const warned = plateauSettings(
      options({ warmupSteps: 3, metricForBestModel: 'eval_mean_token_accuracy' }),
      schedule,
    );
    expect(warned?.metric).toBe('mean_token_accuracy');
    expect(warned?.warnings).toEqual([
      "--schedule reduce_lr_on_plateau starts at --lr and ignores --warmup-steps, as transformers' does",
      '--schedule reduce_lr_on_plateau watches mean_token_accuracy, where higher is better, in mode "min": ' +
        'give {"mode": "max"} in --lr-scheduler-kwargs (transformers passes the mode through as given, "min" by default)',
    ]);
    expect(plateauSettings(options({}), { kind: 'linear' })).toBeNull();
  });

  it('refuses keywords a kind does not read, and what it needs but lacks', () => {
    const run = { warmupSteps: 2, totalSteps: 10, lr: 1e-3 };
    expect(() => scheduleFrom('linear', '{"num_cycles": 2}', run)).toThrow(
      '--lr-scheduler-kwargs num_cycles: --schedule linear reads none',
    );
    expect(() => scheduleFrom('cosine_with_min_lr', undefined, run)).toThrow(
      'needs one of min_lr and min_lr_rate',
    );
    expect(() => scheduleFrom('warmup_stable_decay', '{}', run)).toThrow('needs num_decay_steps');
    expect(() => scheduleFrom('polynomial', '{"lr_end": 0.01}', run)).toThrow(
      'lr_end for --schedule polynomial must be in [0, --lr 0.001)',
    );
    expect(() => scheduleFrom('cosine', '[1]', run)).toThrow('must be a JSON object');
    expect(() => scheduleFrom('cosine', '{oops', run)).toThrow('is not JSON');
    const wsd = scheduleFrom('warmup_stable_decay', '{"num_decay_steps": 9}', run);
    expect(() => validateSchedule(wsd)).toThrow('leave -1 stable steps');
  });
});
