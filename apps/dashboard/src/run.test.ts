import { describe, expect, it } from 'vitest';
import { niceTicks } from './chart.js';
import type { RunEvent, WorkerInfo } from '@lorafleet/run-events';
import { bytes, count, ms, num } from './format.js';
import { RunView } from './run.js';

const step = (n: number, loss: number, time = 1000 * n): RunEvent => ({
  type: 'step',
  time,
  step: n,
  epoch: 0,
  loss,
  lr: 1e-3,
  tokens: 100,
  tokensPerSecond: 1000,
  gradNorm: 1,
  seconds: n,
});

const worker = (rank: number): WorkerInfo => ({
  rank,
  workerId: `w${rank}`,
  host: 'box',
  pid: rank,
  device: 'cpu',
  backend: 'wasm',
  status: 'training',
  lastHeartbeatMs: 0,
  rssBytes: 0,
  computeMs: 1,
  allReduceMs: 1,
  waitMs: 1,
  ringNext: 1 - rank,
});

describe('RunView', () => {
  it("counts throughput in the run's loss unit (tokens, or a preference run's pairs), and keeps its reward accuracy", () => {
    const view = new RunView();
    expect(view.lossUnit).toBe('tokens'); // before the facts, and for runs that predate the field
    const facts = {
      runId: 'r',
      model: 'm',
      mode: 'lora',
      totalParameters: 10,
      trainableParameters: 1,
      lora: null,
      backend: 'wasm',
      workers: 1,
      steps: 2,
      batchSize: 2,
      seqLen: 8,
      wireBytesPerStep: 0,
      fullFinetuneWireBytesPerStep: 0,
    };
    view.apply({ type: 'run', time: 0, facts });
    expect(view.lossUnit).toBe('tokens');
    view.apply({ type: 'run', time: 1, facts: { ...facts, lossUnit: 'pairs' } });
    expect(view.lossUnit).toBe('pairs');
    view.apply({ type: 'eval', time: 2, step: 0, loss: 0.69, rewardAccuracy: 0 });
    view.apply({ type: 'eval', time: 3, step: 2, loss: 0.31, rewardAccuracy: 0.8 });
    expect(view.evalRewardAccuracy).toEqual([
      [0, 0],
      [2, 0.8],
    ]);
  });

  it("a KTO run's reward margins and KL (train and eval), its unit examples", () => {
    const view = new RunView();
    type StepEvent = Extract<RunEvent, { type: 'step' }>;
    const stepWith = (n: number, loss: number, more: Partial<StepEvent>) =>
      ({ ...(step(n, loss) as StepEvent), ...more }) satisfies RunEvent;
    view.apply(stepWith(1, 0.5, { rewardMargin: 0, kl: 0 }));
    view.apply(stepWith(2, 0.4, { rewardMargin: 0.7, kl: 0.03 }));
    view.apply({ type: 'eval', time: 3, step: 2, loss: 0.4, rewardMargin: 0.9, kl: 0 });
    expect(view.trainRewardMargin).toEqual([
      [1, 0],
      [2, 0.7],
    ]);
    expect(view.trainKl).toEqual([
      [1, 0],
      [2, 0.03],
    ]);
    expect(view.evalRewardMargin).toEqual([[2, 0.9]]);
    // A DPO step's margin is the reward chart's, not KTO's.
    view.apply(stepWith(3, 0.3, { rewardAccuracy: 0.5, rewardMargin: 0.2 }));
    expect(view.trainRewardMargin).toHaveLength(2);
  });

  it("a run of the token loss: TRL's mean_token_accuracy, train and eval, the later of repeated steps", () => {
    const view = new RunView();
    type StepEvent = Extract<RunEvent, { type: 'step' }>;
    const stepWith = (n: number, accuracy: number) =>
      ({
        ...(step(n, 1) as StepEvent),
        meanTokenAccuracy: accuracy,
        entropy: 2,
      }) satisfies RunEvent;
    view.apply(stepWith(1, 0.25));
    view.apply(stepWith(2, 0.5));
    view.apply({ type: 'eval', time: 3, step: 2, loss: 0.4, meanTokenAccuracy: 0.4, entropy: 2 });
    view.apply(stepWith(2, 0.75)); // resumed from step 1
    expect(view.trainTokenAccuracy).toEqual([
      [1, 0.25],
      [2, 0.75],
    ]);
    expect(view.evalTokenAccuracy).toEqual([[2, 0.4]]);
    expect(view.trainRewardAccuracy).toEqual([]);
  });

  it('keeps the later values of steps a resumed run repeats', () => {
    const view = new RunView();
    for (let n = 1; n <= 5; n++) view.apply(step(n, 10 - n));
    view.apply({ type: 'end', time: 6000, status: 'interrupted', message: '' });
    for (let n = 4; n <= 6; n++) view.apply(step(n, 100 + n, 10_000 + n));
    expect(view.trainLoss).toEqual([
      [1, 9],
      [2, 8],
      [3, 7],
      [4, 104],
      [5, 105],
      [6, 106],
    ]);
    expect(view.tokens).toBe(800);
  });

  it('has no live workers once the run has ended', () => {
    const view = new RunView();
    view.apply({ type: 'workers', time: 1, generation: 0, workers: [worker(1), worker(0)] });
    expect(view.workers.map((w) => w.rank)).toEqual([0, 1]);
    expect(view.workers.filter((w) => view.live(w))).toHaveLength(2);
    view.apply({ type: 'end', time: 2, status: 'finished', message: '' });
    expect(view.workers.filter((w) => view.live(w))).toHaveLength(0);
  });

  it('measures the pace over recent steps', () => {
    const view = new RunView();
    expect(view.msPerStep()).toBeUndefined();
    for (let n = 1; n <= 30; n++) view.apply(step(n, 1, n * 250));
    expect(view.msPerStep()).toBe(250);
  });
});

describe('axes and figures', () => {
  it('picks round ticks', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(5.17, 5.58, 4)).toEqual([5, 5.2, 5.4, 5.6]);
    expect(niceTicks(0, 400, 4)).toEqual([0, 100, 200, 300, 400]);
    // Values apart by a rounding error: a step that small would never reach hi (the page
    // once threw "Invalid array length" here and stopped updating).
    expect(niceTicks(0.0625, 0.0625 + 2 ** -56, 4)).toEqual([0.0625, 0.0625 + 2 ** -56]);
    expect(niceTicks(3, 3, 4)).toEqual([3, 3]);
  });

  it('formats counts, bytes, durations and values', () => {
    expect(count(35_744)).toBe('35.7k');
    expect(count(124_000_000)).toBe('124M');
    expect(bytes(8192)).toBe('8 KiB');
    expect(bytes(146_400_000)).toBe('140 MiB');
    expect(ms(3.4567)).toBe('3.46 ms');
    expect(ms(1500)).toBe('1.5 s');
    expect(num(2e-4)).toBe('2e-4');
    expect(num(0.00853)).toBe('0.00853');
  });
});
