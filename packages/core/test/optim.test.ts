import { describe, expect, it } from 'vitest';
import {
  ADAMW_DEFAULTS,
  adamWStep,
  cloneAdamWState,
  createAdamWState,
} from '../src/optim/adamw.js';
import { clipGlobalNorm, globalNorm } from '../src/optim/clip.js';
import { lrFactor, validateSchedule } from '../src/optim/schedule.js';

describe('AdamW', () => {
  it('follows the published update rule over several steps', () => {
    // Expected values worked out in float64 from Loshchilov & Hutter's
    // Algorithm 2 (decoupled decay, bias-corrected moments), element by element:
    // a parameter with changing gradients, one with decay only, one with large gradients.
    const options = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
    const params = new Float32Array([1.0, -2.0, 0.5]);
    const state = createAdamWState(3);
    const grads = [
      [0.5, 0.0, -3.0],
      [-0.25, 0.0, 1.0],
      [1.0, 0.0, 2.0],
    ];
    const expected = [
      [0.899000002, -1.998, 0.5994999996666667],
      [0.8714672987058463, -1.996002, 0.6389223566834235],
      [0.804784672376384, -1.994005998, 0.6302536708801302],
    ];
    grads.forEach((g, t) => {
      adamWStep(params, new Float32Array(g), state, options);
      expect(state.step).toBe(t + 1);
      params.forEach((p, i) => expect(p).toBeCloseTo(expected[t]![i]!, 6));
    });
  });

  it('takes the scheduled lr over the configured one', () => {
    const a = new Float32Array([1]);
    const b = new Float32Array([1]);
    adamWStep(a, new Float32Array([1]), createAdamWState(1), { ...ADAMW_DEFAULTS, lr: 0.5 }, 0.1);
    adamWStep(b, new Float32Array([1]), createAdamWState(1), { ...ADAMW_DEFAULTS, lr: 0.1 });
    expect(a[0]).toBe(b[0]);
  });

  it('snapshots are independent copies', () => {
    const state = createAdamWState(2);
    const params = new Float32Array([1, 2]);
    adamWStep(params, new Float32Array([1, 1]), state, ADAMW_DEFAULTS);
    const snap = cloneAdamWState(state);
    adamWStep(params, new Float32Array([1, 1]), state, ADAMW_DEFAULTS);
    expect(snap.step).toBe(1);
    expect(snap.m[0]).not.toBe(state.m[0]);
  });

  it('rejects buffers of different lengths', () => {
    expect(() =>
      adamWStep(new Float32Array(3), new Float32Array(2), createAdamWState(3), ADAMW_DEFAULTS),
    ).toThrow(/params \(3\), grads \(2\)/);
  });
});

describe('global-norm clipping', () => {
  it('scales gradients above the limit to the limit, as torch does', () => {
    const g = new Float32Array([3, 4]);
    const norm = clipGlobalNorm(g, 1);
    expect(norm).toBe(5);
    expect(globalNorm(g)).toBeCloseTo(1, 5);
    expect(g[0]! / g[1]!).toBeCloseTo(0.75, 6);
  });

  it('leaves gradients under the limit alone', () => {
    const g = new Float32Array([0.3, 0.4]);
    expect(clipGlobalNorm(g, 1)).toBeCloseTo(0.5, 6);
    expect([...g]).toEqual([Math.fround(0.3), Math.fround(0.4)]);
  });

  it('reports a non-finite norm without touching the buffer', () => {
    const g = new Float32Array([NaN, 1]);
    expect(clipGlobalNorm(g, 1)).toBeNaN();
    expect(g[1]).toBe(1);
    expect(() => clipGlobalNorm(g, 0)).toThrow(/must be positive/);
  });
});

describe('learning-rate schedules', () => {
  it('warms up linearly, then holds, decays linearly, or follows a half cosine', () => {
    expect(lrFactor({ kind: 'constant', warmupSteps: 4 }, 0)).toBe(0);
    expect(lrFactor({ kind: 'constant', warmupSteps: 4 }, 2)).toBe(0.5);
    expect(lrFactor({ kind: 'constant', warmupSteps: 4 }, 9)).toBe(1);
    const linear = { kind: 'linear', warmupSteps: 10, totalSteps: 110 } as const;
    expect(lrFactor(linear, 10)).toBe(1);
    expect(lrFactor(linear, 60)).toBe(0.5);
    expect(lrFactor(linear, 110)).toBe(0);
    expect(lrFactor(linear, 500)).toBe(0);
    const cosine = { kind: 'cosine', warmupSteps: 0, totalSteps: 100 } as const;
    expect(lrFactor(cosine, 0)).toBe(1);
    expect(lrFactor(cosine, 50)).toBeCloseTo(0.5, 12);
    expect(lrFactor(cosine, 100)).toBeCloseTo(0, 12);
    expect(lrFactor({ ...cosine, minRatio: 0.1 }, 100)).toBeCloseTo(0.1, 12);
  });

  it('rejects nonsense settings', () => {
    expect(() => validateSchedule({ kind: 'linear', totalSteps: 0 })).toThrow(/total steps > 0/);
    expect(() => validateSchedule({ kind: 'constant', warmupSteps: -1 })).toThrow(/warmup/);
  });
});
