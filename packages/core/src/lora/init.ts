// LoRA initialisation as pure functions on plain arrays: the same seed gives
// the same bits on every replica and every backend.
import { Rng } from '../random.js';
import { type Matrix, matmul, matrix, qr, transpose, truncatedSvd } from '../svd/index.js';

/** How A and B start. */
export type LoraInit =
  /** PEFT's default: A kaiming-uniform (a = sqrt 5), B = 0, so the update starts at zero. */
  | { kind: 'kaiming' }
  /** PEFT's `init_lora_weights="gaussian"`: A ~ N(0, (1/r)^2), B = 0. */
  | { kind: 'gaussian' }
  /**
   * PiSSA (Meng et al. 2024): A, B from W's top-r singular triplets, and W
   * replaced by the residual, so the layer's output is unchanged at step 0.
   */
  | {
      kind: 'pissa';
      svd?: 'auto' | 'exact' | 'randomized';
      powerIterations?: number;
      /** The randomized SVD's samples beyond r (default 10; PEFT's pissa_niter_N: 0). */
      oversample?: number;
    }
  /**
   * OLoRA (Büyükakyüz 2024, arXiv 2406.01775), PEFT's `init_lora_weights="olora"`:
   * W = Q R, B = Q's first r columns, A = R's first r rows, and W replaced by
   * W - scaling * B A, so the layer's output is unchanged at step 0.
   */
  | { kind: 'olora' }
  /**
   * PEFT's `init_lora_weights="orthogonal"`: A and B from the odd and the
   * even rows of one random orthogonal matrix, so B A = 0 (the update starts
   * at zero) while both are non-zero (both learn from the first step). r even.
   */
  | { kind: 'orthogonal' };

/** Every initialisation's kind, as the CLI and run configs name them. */
export const LORA_INIT_KINDS: readonly LoraInit['kind'][] = [
  'kaiming',
  'gaussian',
  'pissa',
  'olora',
  'orthogonal',
];

/** The initialisations that replace the base weight by a residual (their adapters are saved for the original W: pissa-convert.ts). */
export const RESIDUAL_INITS: readonly LoraInit['kind'][] = ['pissa', 'olora'];

/** How messages name each initialisation. */
export const INIT_TITLES: { readonly [K in LoraInit['kind']]: string } = {
  kaiming: 'kaiming-uniform',
  gaussian: 'Gaussian',
  pissa: 'PiSSA',
  olora: 'OLoRA',
  orthogonal: 'orthogonal',
};

/**
 * PEFT's `init_lora_weights="pissa_niter_N"`: PiSSA from torch.svd_lowrank(W,
 * q=r, niter=N), a randomized SVD of exactly r samples and N power
 * iterations: faster than the full SVD, approximate for small N.
 */
export function pissaNiter(powerIterations: number): Extract<LoraInit, { kind: 'pissa' }> {
  return { kind: 'pissa', svd: 'randomized', powerIterations, oversample: 0 };
}

/** Whether `kind` replaces the base weight by a residual (and so needs W in float32). */
export const changesBase = (kind: LoraInit['kind']): boolean => RESIDUAL_INITS.includes(kind);

export interface LoraInitShape {
  r: number;
  inFeatures: number;
  outFeatures: number;
  /** alpha / r (or alpha / sqrt r): PiSSA divides it out so that scaling * B A = W_r. */
  scaling: number;
}

export interface LoraInitResult {
  a: Float32Array; // [r, in]
  b: Float32Array; // [out, r]
  /** PiSSA and OLoRA (RESIDUAL_INITS): the new base weight W - scaling * B A, [out, in]. */
  residual?: Float32Array;
}

/** A ~ U(-1/sqrt(in), 1/sqrt(in)): torch's kaiming_uniform_ with a = sqrt(5) on [r, in]. */
export function kaimingUniformA(r: number, inFeatures: number, rng: Rng): Float32Array {
  const bound = 1 / Math.sqrt(inFeatures);
  const a = new Float32Array(r * inFeatures);
  for (let i = 0; i < a.length; i++) a[i] = (2 * rng.uniform() - 1) * bound;
  return a;
}

export function gaussianA(r: number, inFeatures: number, rng: Rng): Float32Array {
  const a = new Float32Array(r * inFeatures);
  for (let i = 0; i < a.length; i++) a[i] = rng.normal() / r;
  return a;
}

/**
 * PiSSA from W [out, in] (row-major): W = U S V^T, A = sqrt(S_r / scaling) V_r^T,
 * B = U_r sqrt(S_r / scaling), residual = W - scaling * B A, all in float64.
 */
export function pissaInit(
  weight: Float32Array,
  shape: LoraInitShape,
  options: {
    svd?: 'auto' | 'exact' | 'randomized';
    powerIterations?: number;
    oversample?: number;
    seed?: number;
  } = {},
): Required<LoraInitResult> {
  const { r, inFeatures: n, outFeatures: m, scaling } = shape;
  if (weight.length !== m * n) {
    throw new Error(`PiSSA: weight has ${weight.length} values, expected [${m}, ${n}] = ${m * n}`);
  }
  if (r > Math.min(m, n)) {
    throw new Error(`PiSSA: rank ${r} exceeds min(out, in) = ${Math.min(m, n)} of the weight`);
  }
  const w = matrix(m, n, weight);
  const { u, s, v } = truncatedSvd(w, r, {
    method: options.svd ?? 'auto',
    powerIterations: options.powerIterations ?? 4,
    ...(options.oversample !== undefined ? { oversample: options.oversample } : {}),
    seed: options.seed ?? 0,
  });
  const a = new Float32Array(r * n);
  const b = new Float32Array(m * r);
  const a64 = new Float64Array(r * n);
  const b64 = new Float64Array(m * r);
  for (let k = 0; k < r; k++) {
    const root = Math.sqrt((s[k] ?? 0) / scaling);
    for (let j = 0; j < n; j++) a64[k * n + j] = root * (v.data[j * r + k] ?? 0);
    for (let i = 0; i < m; i++) b64[i * r + k] = (u.data[i * r + k] ?? 0) * root;
  }
  a.set(a64);
  b.set(b64);
  return { a, b, residual: residualOf(weight, a, b, shape) };
}

/**
 * W - scaling * B A [out, in], from the float32-rounded A and B, so that
 * residual + scaling * B A reproduces W as closely as float32 allows.
 */
function residualOf(
  weight: Float32Array,
  a: Float32Array,
  b: Float32Array,
  { r, inFeatures: n, outFeatures: m, scaling }: LoraInitShape,
): Float32Array {
  const residual = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let ba = 0;
      for (let k = 0; k < r; k++) ba += (b[i * r + k] ?? 0) * (a[k * n + j] ?? 0);
      residual[i * n + j] = (weight[i * n + j] ?? 0) - scaling * ba;
    }
  }
  return residual;
}

/**
 * OLoRA from W [out, in] (row-major), as PEFT's olora_init: W = Q R (reduced,
 * LAPACK's signs), B = Q[:, :r] [out, r], A = R[:r] [r, in] (not divided by
 * the scaling, as PEFT's), residual = W - scaling * B A.
 */
export function oloraInit(weight: Float32Array, shape: LoraInitShape): Required<LoraInitResult> {
  const { r, inFeatures: n, outFeatures: m } = shape;
  if (weight.length !== m * n) {
    throw new Error(`OLoRA: weight has ${weight.length} values, expected [${m}, ${n}] = ${m * n}`);
  }
  if (r > Math.min(m, n)) {
    throw new Error(`OLoRA: rank ${r} exceeds min(out, in) = ${Math.min(m, n)} of the weight`);
  }
  const { q, r: upper } = qr(matrix(m, n, weight)); // q [m, k], upper [k, n]
  const k = q.cols;
  const b = Float32Array.from(
    { length: m * r },
    (_, i) => q.data[Math.floor(i / r) * k + (i % r)]!,
  );
  const a = Float32Array.from(upper.data.subarray(0, r * n));
  return { a, b, residual: residualOf(weight, a, b, shape) };
}

/**
 * PEFT's orthogonal_init from its three random draws, in its order: X [r, r],
 * then RA [in, r/2] and RB [r/2, out], standard normal. Q = qr(X).q; A =
 * (RA Q[0::2])^T / 10 [r, in], B = RB^T Q[1::2] / 10 [out, r]; B A = 0 as
 * Q's odd and even rows are orthogonal.
 */
export function orthogonalFactors(
  x: Matrix,
  ra: Matrix,
  rb: Matrix,
): { a: Float32Array; b: Float32Array } {
  const r = x.rows;
  const { q } = qr(x); // [r, r]
  const rows = (parity: number) => {
    const out = matrix(r / 2, r);
    for (let i = 0; i < r / 2; i++)
      out.data.set(q.data.subarray((2 * i + parity) * r, (2 * i + parity + 1) * r), i * r);
    return out;
  };
  const a = transpose(matmul(ra, rows(0))); // [r, in]
  const b = matmul(transpose(rb), rows(1)); // [out, r]
  const tenth = (m: Matrix) => Float32Array.from(m.data, (v) => v / 10);
  return { a: tenth(a), b: tenth(b) };
}

/** orthogonalFactors of draws from the project's seeded Rng. */
export function orthogonalInit(shape: LoraInitShape, seed: number): LoraInitResult {
  const { r, inFeatures: n, outFeatures: m } = shape;
  if (r % 2 !== 0) throw new Error(`orthogonal initialisation needs an even LoRA rank, got ${r}`);
  const rng = new Rng(seed);
  const draw = (rows: number, cols: number) =>
    matrix(
      rows,
      cols,
      Array.from({ length: rows * cols }, () => rng.normal()),
    );
  const x = draw(r, r);
  const ra = draw(n, r / 2);
  return orthogonalFactors(x, ra, draw(r / 2, m));
}

/** Each initialisation: A and B (and the residual base weight) of one module. */
const INITS: {
  [K in LoraInit['kind']]: (
    init: Extract<LoraInit, { kind: K }>,
    shape: LoraInitShape,
    seed: number,
    weight?: Float32Array,
  ) => LoraInitResult;
} = {
  kaiming: (_, shape, seed) => ({
    a: kaimingUniformA(shape.r, shape.inFeatures, new Rng(seed)),
    b: new Float32Array(shape.outFeatures * shape.r),
  }),
  gaussian: (_, shape, seed) => ({
    a: gaussianA(shape.r, shape.inFeatures, new Rng(seed)),
    b: new Float32Array(shape.outFeatures * shape.r),
  }),
  pissa: (init, shape, seed, weight) =>
    pissaInit(needWeight('PiSSA', weight), shape, {
      ...(init.svd ? { svd: init.svd } : {}),
      ...(init.powerIterations !== undefined ? { powerIterations: init.powerIterations } : {}),
      ...(init.oversample !== undefined ? { oversample: init.oversample } : {}),
      seed,
    }),
  olora: (_, shape, __, weight) => oloraInit(needWeight('OLoRA', weight), shape),
  orthogonal: (_, shape, seed) => orthogonalInit(shape, seed),
};

function needWeight(name: string, weight?: Float32Array): Float32Array {
  if (!weight) throw new Error(`${name} initialisation needs the base weight`);
  return weight;
}

/**
 * Initial A and B for one module. `weight` ([out, in], row-major) is needed
 * by the RESIDUAL_INITS only.
 */
export function initLora(
  init: LoraInit,
  shape: LoraInitShape,
  seed: number,
  weight?: Float32Array,
): LoraInitResult {
  const of = INITS[init.kind] as (
    i: LoraInit,
    s: LoraInitShape,
    seed: number,
    w?: Float32Array,
  ) => LoraInitResult;
  return of(init, shape, seed, weight);
}
