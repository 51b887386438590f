// Fuzzing the RunConfig decoder (Welcome.runConfig comes from the network):
// random JSON, random text and field-level mutations of a valid config must
// give a RunConfigError, never another exception, and whatever is accepted
// must be a config the coordinator could have sent (checked here on its own
// terms) that survives a round trip. A seeded generator makes each run the
// same; a failure names its case number and seed.
import { Rng } from '@lorafleet/core';
import { describe, expect, it } from 'vitest';
import {
  type RunConfig,
  RunConfigError,
  decodeRunConfig,
  encodeRunConfig,
  runConfigHash,
} from '../src/index.js';

const SEED = 20261126;

const valid: RunConfig = {
  modelDir: '/models/tiny',
  dataFile: '/data/train.csv',
  rows: {
    seqLen: 16,
    packing: 'auto',
    format: 'csv',
    csv: { textColumn: 'text' },
    loss: { completionOnly: false, assistantOnly: true },
    truncation: 'keep_end',
  },
  mode: 'lora',
  evalFraction: 0,
  rowsFingerprint: 'sha256:00',
  evalData: { file: '/data/valid.csv', rowsFingerprint: 'sha256:01' },
  lora: { r: 2, alpha: 4, dropout: 0, rslora: false, init: 'kaiming', targets: ['c_attn'] },
  optimizer: { kind: 'adamw', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
  schedule: { kind: 'cosine', warmupSteps: 2, totalSteps: 10, minRatio: 0.1 },
  maxGradNorm: 1,
  seed: 3,
  ringTimeoutMs: 10_000,
  wireDtype: 'fp32',
  resumeFrom: '/runs/a/checkpoints/step-000004',
  baseDtype: 'bf16',
};

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)]!;
const FIELD_NAMES = [
  ...new Set(
    JSON.stringify(valid)
      .match(/"(\w+)":/g)!
      .map((k) => k.slice(1, -2)),
  ),
];
const EDGE_NUMBERS = [0, -0, 1, -1, 0.5, 1.5, 2, 2 ** 32, 2 ** 53, -(2 ** 31), 1e308, -1e-300];
const STRINGS = ['', ' ', 'a', 'constant', 'linear', 'cosine', 'kaiming', 'pissa', 'pack', 'csv'];

/** A random JSON value, biased towards the names and values a RunConfig uses. */
function randomJson(rng: Rng, depth = 0): unknown {
  const kind = Math.floor(rng.uniform() * (depth > 3 ? 4 : 6));
  switch (kind) {
    case 0:
      return pick(rng, [null, true, false]);
    case 1:
      return rng.uniform() < 0.7 ? pick(rng, EDGE_NUMBERS) : (rng.uniform() - 0.5) * 1e6;
    case 2:
      return pick(rng, STRINGS);
    case 3:
      return rng.uniform() < 0.5 ? pick(rng, STRINGS) : pick(rng, EDGE_NUMBERS);
    case 4:
      return Array.from({ length: Math.floor(rng.uniform() * 4) }, () =>
        randomJson(rng, depth + 1),
      );
    default: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(rng.uniform() * 6);
      for (let i = 0; i < n; i++) o[pick(rng, FIELD_NAMES)] = randomJson(rng, depth + 1);
      return o;
    }
  }
}

/** Every path to a value inside `x`. */
function paths(x: unknown, at: string[] = []): string[][] {
  const own = at.length > 0 ? [at] : [];
  if (typeof x !== 'object' || x === null) return own;
  const keys = Array.isArray(x) ? x.map((_, i) => String(i)) : Object.keys(x);
  return [...own, ...keys.flatMap((k) => paths((x as Record<string, unknown>)[k], [...at, k]))];
}

/** A copy of `config` with one to three values deleted, replaced or nudged. */
function mutated(rng: Rng): unknown {
  const copy = JSON.parse(JSON.stringify(valid)) as Record<string, unknown>;
  const times = 1 + Math.floor(rng.uniform() * 3);
  for (let t = 0; t < times; t++) {
    const path = pick(rng, paths(copy));
    if (!path) break;
    let parent = copy as Record<string, unknown>;
    for (const k of path.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
    const key = path.at(-1)!;
    const r = rng.uniform();
    if (r < 0.25) delete parent[key];
    else if (r < 0.5 && typeof parent[key] === 'number') parent[key] = pick(rng, EDGE_NUMBERS);
    else if (r < 0.6) parent[pick(rng, FIELD_NAMES)] = randomJson(rng);
    else parent[key] = randomJson(rng);
  }
  return copy;
}

const isInt = (x: unknown, min: number, max = Number.MAX_SAFE_INTEGER) =>
  Number.isSafeInteger(x) && (x as number) >= min && (x as number) <= max;
const inRange = (x: number, min: number, max: number) => x >= min && x < max;

/** What the coordinator can send, stated independently of the decoder. */
function problemsOf(c: RunConfig): string[] {
  const p: string[] = [];
  const { rows, lora, optimizer: o, schedule: s } = c;
  if (!isInt(rows.seqLen, 2)) p.push('rows.seqLen');
  if (rows.csv) {
    const cols = rows.csv as Record<string, unknown>;
    const text = (k: string) => typeof cols[k] === 'string' && cols[k] !== '';
    const template = cols.promptTemplate === undefined || typeof cols.promptTemplate === 'string';
    if (!(text('textColumn') || (text('promptColumn') && text('completionColumn') && template)))
      p.push('rows.csv');
  }
  if (!isInt(lora.r, 1) || !(lora.alpha > 0) || !inRange(lora.dropout, 0, 1)) p.push('lora');
  // The sample trains AdamW; a kind left out means AdamW (run configs from before other optimizers).
  const kind = (o as { kind?: unknown }).kind;
  if (kind !== undefined && kind !== null && kind !== 'adamw') p.push('optimizer.kind');
  else if (o.kind === 'adamw' || kind == null) {
    const a = o as Extract<typeof o, { kind: 'adamw' }>;
    if (!(a.lr >= 0) || !inRange(a.beta1, 0, 1) || !inRange(a.beta2, 0, 1)) p.push('optimizer');
    if (!(a.eps > 0) || !(a.weightDecay >= 0)) p.push('optimizer');
  }
  if (!isInt(s.warmupSteps ?? 0, 0)) p.push('schedule.warmupSteps');
  if (s.kind !== 'constant' && !isInt(s.totalSteps, 1)) p.push('schedule.totalSteps');
  if (s.kind === 'cosine' && s.minRatio !== undefined && !(s.minRatio >= 0 && s.minRatio <= 1))
    p.push('schedule.minRatio');
  if (c.maxGradNorm !== null && !(c.maxGradNorm > 0)) p.push('maxGradNorm');
  if (!isInt(c.seed, 0, 2 ** 32 - 1)) p.push('seed');
  if (!(c.ringTimeoutMs > 0)) p.push('ringTimeoutMs');
  return p;
}

/** Decodes `json` (hashed correctly); returns 'refused' or the config, failing on anything else. */
function decode(json: string, what: string): RunConfig | 'refused' {
  try {
    return decodeRunConfig(json, runConfigHash(json));
  } catch (err) {
    if (err instanceof RunConfigError && err.message !== '') return 'refused';
    throw new Error(`${what}: ${json}\nthrew ${String(err)} instead of a RunConfigError`);
  }
}

function fuzz(
  runs: number,
  make: (rng: Rng) => string,
  check: (c: RunConfig, json: string) => void,
) {
  const rng = new Rng(SEED);
  let accepted = 0;
  for (let i = 0; i < runs; i++) {
    const json = make(rng);
    const result = decode(json, `case ${i} (seed ${SEED})`);
    if (result === 'refused') continue;
    accepted++;
    check(result, json);
  }
  return accepted;
}

describe('decodeRunConfig under fuzzing', () => {
  it('accepts the valid config, and refuses a wrong hash', () => {
    const { runConfig, runConfigHash: hash } = encodeRunConfig(valid);
    expect(decodeRunConfig(runConfig, hash)).toEqual(valid);
    const wrong = `${hash.slice(0, -1)}${hash.endsWith('0') ? '1' : '0'}`;
    expect(() => decodeRunConfig(runConfig, wrong)).toThrow(RunConfigError);
  });

  it('refuses random JSON values with a RunConfigError', () => {
    const accepted = fuzz(
      3000,
      (rng) => JSON.stringify(randomJson(rng)),
      () => undefined,
    );
    expect(accepted).toBe(0);
  });

  it('refuses text that is not JSON, or truncated JSON, with a RunConfigError', () => {
    const text = JSON.stringify(valid);
    for (let end = 0; end < text.length; end++) decode(text.slice(0, end), `prefix ${end}`);
    for (const junk of ['', '\u0000', 'nul', '{"a":', '[1,2', '1e999', '"\\ud800"', '{}'.repeat(9)])
      expect(decode(junk, 'junk')).toBe('refused');
    expect(decode('['.repeat(100_000), 'deep')).toBe('refused');
  });

  it('accepts a mutated config only when it is one the coordinator could send', () => {
    const accepted = fuzz(
      4000,
      (rng) => JSON.stringify(mutated(rng)),
      (config, json) => {
        const problems = problemsOf(config);
        if (problems.length > 0)
          throw new Error(`accepted ${json}\nwith bad ${problems.join(', ')}`);
        const again = encodeRunConfig(config);
        expect(decodeRunConfig(again.runConfig, again.runConfigHash)).toEqual(config);
      },
    );
    // Some mutations keep the config valid (e.g. a new seed): the check above ran.
    expect(accepted).toBeGreaterThan(50);
  });
});

describe('decodeRunConfig: the preference objectives', () => {
  const pairsConfig = (objective: unknown, extra: Partial<RunConfig> = {}) => {
    const json = JSON.stringify({
      ...valid,
      rows: { seqLen: 16, packing: 'pad', pairs: true },
      objective,
      ...extra,
    });
    return () => decodeRunConfig(json, runConfigHash(json));
  };

  it('decodes DPO, ORPO, SimPO and CPO with their settings', () => {
    expect(pairsConfig({ kind: 'dpo', beta: 0.1, loss: 'ipo' })().objective).toEqual({
      kind: 'dpo',
      beta: 0.1,
      loss: 'ipo',
    });
    expect(pairsConfig({ kind: 'orpo', beta: 0.1 })().objective).toEqual({
      kind: 'orpo',
      beta: 0.1,
    });
    expect(pairsConfig({ kind: 'simpo', beta: 2, gamma: 0.5 })().objective).toEqual({
      kind: 'simpo',
      beta: 2,
      gamma: 0.5,
    });
    const cpoSimpo = { kind: 'simpo', beta: 2, gamma: 0.5, alpha: 0.3 };
    expect(pairsConfig(cpoSimpo)().objective).toEqual(cpoSimpo);
    const cpo = { kind: 'cpo', beta: 0.1, alpha: 1, loss: 'hinge' };
    expect(pairsConfig(cpo)().objective).toEqual(cpo);
    expect(pairsConfig({ kind: 'cpo', beta: 0.1 })).toThrow(/alpha/);
    expect(pairsConfig({ kind: 'cpo', beta: 0.1, alpha: 1, loss: 'simpo' })).toThrow(/loss/);
    const smoothedCpo = { kind: 'cpo', beta: 0.1, alpha: 1, labelSmoothing: 0.2 };
    expect(pairsConfig(smoothedCpo)().objective).toEqual(smoothedCpo);
  });

  it("decodes TRL's other DPO settings, and refuses their contradictions", () => {
    const mpo = {
      kind: 'dpo',
      beta: 0.1,
      loss: ['sigmoid', 'bco_pair', 'sft'],
      lossWeights: [0.8, 0.2, 1],
      fDivergence: 'alpha_divergence',
      fAlpha: 0.3,
      discopopTau: 0.1,
      ldAlpha: 0.5,
    };
    expect(
      pairsConfig({ ...mpo, loss: ['sigmoid', 'sft'], lossWeights: [1, 2] })().objective,
    ).toEqual({
      ...mpo,
      loss: ['sigmoid', 'sft'],
      lossWeights: [1, 2],
    });
    expect(pairsConfig({ ...mpo, fDivergence: undefined })().objective).toMatchObject({
      loss: mpo.loss,
    });
    expect(pairsConfig(mpo)).toThrow('fDivergence alpha_divergence cannot score loss bco_pair');
    expect(pairsConfig({ ...mpo, lossWeights: [1] })).toThrow(
      'lossWeights must be 3 finite numbers, one per loss type',
    );
    expect(pairsConfig({ ...mpo, loss: ['sigmoid', 'dpo'] })).toThrow('must list loss types of');
    expect(pairsConfig({ kind: 'dpo', beta: 0.1, ldAlpha: 2 })).toThrow(
      'ldAlpha must be a number in [0, 1]',
    );
  });

  it('refuses what an objective cannot train; ORPO and SimPO need no base to keep', () => {
    expect(pairsConfig({ kind: 'simpo', beta: 2 })).toThrow(/gamma/);
    expect(pairsConfig({ kind: 'kto', beta: 2 })).toThrow(RunConfigError);
    expect(pairsConfig({ kind: 'orpo', beta: 0 })).toThrow(/beta/);
    const pissa = { lora: { ...valid.lora, init: 'pissa' as const } };
    expect(pairsConfig({ kind: 'dpo', beta: 0.1 }, pissa)).toThrow(
      'runConfig.objective: dpo cannot train with lora.init "pissa"',
    );
    expect(pairsConfig({ kind: 'orpo', beta: 0.1 }, pissa)().lora.init).toBe('pissa');
    expect(
      pairsConfig({ kind: 'simpo', beta: 2, gamma: 1 }, { mode: 'full', baseDtype: 'f32' })().mode,
    ).toBe('full');
    const unpaired = pairsConfig(
      { kind: 'orpo', beta: 0.1 },
      { rows: { seqLen: 16, packing: 'pad' } },
    );
    expect(unpaired).toThrow('runConfig.objective: orpo trains on pairs (rows.pairs must be true)');
  });
});
