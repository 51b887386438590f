// PEFT's OLoRA and orthogonal initialisations against PEFT itself, and the QR
// decomposition they rest on against torch.linalg.qr
// (test/reference/lora_inits.py): the same Q and R (LAPACK's signs included),
// OLoRA's A, B and residual base weight, and orthogonal's A and B from PEFT's
// own random draws (B A = 0: the update starts at zero).
import { describe, expect, it } from 'vitest';
import { initLora, oloraInit, orthogonalFactors, pissaNiter } from '../src/lora/init.js';
import { Rng } from '../src/random.js';
import { matmul, matrix, qr, transpose } from '../src/svd/index.js';
import { referenceJson } from '../src/testing/reference-python.js';

const normals = (n: number, seed: number) => {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => rng.normal());
};

/** Tall, wide and square; one whose first column is already zero below its diagonal, one with a zero column. */
const QR_CASES = [
  { rows: 7, cols: 4, values: normals(28, 1) },
  { rows: 4, cols: 7, values: normals(28, 2) },
  { rows: 5, cols: 5, values: normals(25, 3) },
  { rows: 4, cols: 3, values: [-2, 1, 0, 0, 3, 1, 0, -1, 2, 0, 4, -3] },
  { rows: 4, cols: 3, values: [1, 0, 2, 3, 0, -1, -2, 0, 5, 1, 0, 1] },
];

/** [out, in] weights: tall and wide, plain and rsLoRA scaling. */
const OLORA_CASES = [
  { out: 12, in: 8, r: 3, alpha: 6, rslora: false, weight: normals(96, 4) },
  { out: 6, in: 10, r: 4, alpha: 16, rslora: true, weight: normals(60, 5) },
];

/** [out, in] and an even rank, the seed of torch's draws. */
const ORTHOGONAL_CASES = [
  { out: 10, in: 7, r: 4, seed: 3 },
  { out: 5, in: 12, r: 6, seed: 11 },
];

/**
 * A [40, 32] weight whose singular values halve at each step (U and V random
 * orthonormal, from QR), plus a little noise: a gap a randomized SVD of r
 * samples resolves in a few power iterations.
 */
function decayingWeight(seed: number): number[] {
  const [out, inn, k] = [40, 32, 12];
  const u = qr(matrix(out, k, normals(out * k, seed))).q;
  const v = qr(matrix(inn, k, normals(inn * k, seed + 1))).q;
  const noise = normals(out * inn, seed + 2);
  return Array.from({ length: out * inn }, (_, idx) => {
    const [i, j] = [Math.floor(idx / inn), idx % inn];
    let w = 0;
    for (let c = 0; c < k; c++) w += u.data[i * k + c]! * 4 * 0.5 ** c * v.data[j * k + c]!;
    return w + 1e-4 * noise[idx]!;
  });
}

/** PiSSA by the full SVD and by PEFT's randomized one of 16 power iterations. */
const PISSA_CASES = [
  { out: 40, in: 32, r: 4, alpha: 8, init: 'pissa', weight: decayingWeight(7) },
  { out: 40, in: 32, r: 4, alpha: 8, init: 'pissa_niter_16', weight: decayingWeight(7) },
];

const reference = referenceJson<{
  qr: { q: number[]; r: number[] }[];
  olora: { a: number[]; b: number[]; residual: number[] }[];
  orthogonal: { a: number[]; b: number[]; x: number[]; ra: number[]; rb: number[] }[];
  pissa: { update: number[]; residual: number[] }[];
}>('lora_inits', {
  ...{ qr: QR_CASES, olora: OLORA_CASES, orthogonal: ORTHOGONAL_CASES, pissa: PISSA_CASES },
});

const maxGap = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  return Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i]!)));
};

describe('qr', () => {
  it.each(QR_CASES.map((c, i) => [`${c.rows} x ${c.cols} (${i})`, i] as const))(
    "%s: torch.linalg.qr's Q and R, signs included",
    (_, i) => {
      const c = QR_CASES[i]!;
      const m = matrix(c.rows, c.cols, c.values);
      const { q, r } = qr(m);
      const k = Math.min(c.rows, c.cols);
      expect([q.rows, q.cols, r.rows, r.cols]).toEqual([c.rows, k, k, c.cols]);
      expect(maxGap(q.data, reference.qr[i]!.q)).toBeLessThan(1e-12);
      expect(maxGap(r.data, reference.qr[i]!.r)).toBeLessThan(1e-12);
      // Its own properties: Q R = m, Q^T Q = I, R upper triangular.
      expect(maxGap(matmul(q, r).data, m.data)).toBeLessThan(1e-12);
      const gram = matmul(transpose(q), q).data;
      expect(
        maxGap(
          gram,
          matrix(
            k,
            k,
            Array.from(gram, (_, j) => (j % (k + 1) === 0 ? 1 : 0)),
          ).data,
        ),
      ).toBeLessThan(1e-12);
      for (let row = 0; row < k; row++)
        for (let col = 0; col < Math.min(row, c.cols); col++)
          expect(r.data[row * c.cols + col]).toBe(0);
    },
  );
});

describe('oloraInit', () => {
  it.each(
    OLORA_CASES.map(
      (c, i) => [`[${c.out}, ${c.in}] r ${c.r}${c.rslora ? ' rsLoRA' : ''}`, i] as const,
    ),
  )("%s: PEFT's A, B and residual base weight", (_, i) => {
    const c = OLORA_CASES[i]!;
    const scaling = c.rslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
    const shape = { r: c.r, inFeatures: c.in, outFeatures: c.out, scaling };
    const ours = oloraInit(Float32Array.from(c.weight), shape);
    const want = reference.olora[i]!;
    // PEFT computes the QR in float32, core in float64.
    expect(maxGap(ours.a, want.a)).toBeLessThan(2e-5);
    expect(maxGap(ours.b, want.b)).toBeLessThan(2e-5);
    expect(maxGap(ours.residual, want.residual)).toBeLessThan(2e-5);
    expect(maxGap(ours.residual, c.weight)).toBeGreaterThan(0.1); // the base changed
  });

  it("refuses a rank above the weight's smaller side", () => {
    const shape = { r: 5, inFeatures: 4, outFeatures: 6, scaling: 1 };
    expect(() => oloraInit(new Float32Array(24), shape)).toThrow(
      'OLoRA: rank 5 exceeds min(out, in) = 4 of the weight',
    );
  });
});

describe('orthogonal', () => {
  it.each(ORTHOGONAL_CASES.map((c, i) => [`[${c.out}, ${c.in}] r ${c.r}`, i] as const))(
    "%s: PEFT's A and B from its own draws",
    (_, i) => {
      const c = ORTHOGONAL_CASES[i]!;
      const want = reference.orthogonal[i]!;
      const { a, b } = orthogonalFactors(
        matrix(c.r, c.r, want.x),
        matrix(c.in, c.r / 2, want.ra),
        matrix(c.r / 2, c.out, want.rb),
      );
      expect(maxGap(a, want.a)).toBeLessThan(1e-6);
      expect(maxGap(b, want.b)).toBeLessThan(1e-6);
      expect(Math.max(...want.a.map(Math.abs))).toBeGreaterThan(0.05);
    },
  );

  it("starts the update at zero with both factors non-zero, from the project's seeded draws", () => {
    const shape = { r: 4, inFeatures: 9, outFeatures: 6, scaling: 2 };
    const { a, b, residual } = initLora({ kind: 'orthogonal' }, shape, 5);
    expect(residual).toBeUndefined();
    const ba = matmul(matrix(6, 4, b), matrix(4, 9, a)).data;
    expect(Math.max(...Array.from(ba, Math.abs))).toBeLessThan(1e-7);
    expect(
      Math.min(Math.max(...Array.from(a, Math.abs)), Math.max(...Array.from(b, Math.abs))),
    ).toBeGreaterThan(0.01);
    // The same seed, the same bits; another seed, others.
    expect(initLora({ kind: 'orthogonal' }, shape, 5).a).toEqual(a);
    expect(initLora({ kind: 'orthogonal' }, shape, 6).a).not.toEqual(a);
    expect(() => initLora({ kind: 'orthogonal' }, { ...shape, r: 3 }, 5)).toThrow(
      'orthogonal initialisation needs an even LoRA rank, got 3',
    );
  });
});

describe('PiSSA', () => {
  /** scaling B A [out, in] of an initialisation, in float64 from its float32 factors. */
  const update = (a: Float32Array, b: Float32Array, c: (typeof PISSA_CASES)[number]) =>
    Array.from({ length: c.out * c.in }, (_, idx) => {
      const [i, j] = [Math.floor(idx / c.in), idx % c.in];
      let sum = 0;
      for (let k = 0; k < c.r; k++) sum += b[i * c.r + k]! * a[k * c.in + j]!;
      return (c.alpha / c.r) * sum;
    });

  it.each(PISSA_CASES.map((c, i) => [c.init, i] as const))(
    "%s: PEFT's update (scaling B A: W's top singular part) and residual base weight",
    (init, i) => {
      const c = PISSA_CASES[i]!;
      const shape = { r: c.r, inFeatures: c.in, outFeatures: c.out, scaling: c.alpha / c.r };
      const how = init === 'pissa' ? { kind: 'pissa' as const } : pissaNiter(16);
      const ours = initLora(how, shape, 3, Float32Array.from(c.weight));
      const want = reference.pissa[i]!;
      // The products are sign-free; both SVDs reach W's top 4 singular triplets (PEFT's in float32).
      expect(maxGap(update(ours.a, ours.b, c), want.update)).toBeLessThan(5e-5);
      expect(maxGap(ours.residual!, want.residual)).toBeLessThan(5e-5);
      expect(maxGap(ours.residual!, c.weight)).toBeGreaterThan(0.1); // the base changed
    },
  );

  it('pissa_niter_N is a randomized SVD of exactly r samples: without power iterations it is approximate', () => {
    const c = PISSA_CASES[0]!;
    const shape = { r: c.r, inFeatures: c.in, outFeatures: c.out, scaling: c.alpha / c.r };
    const weight = Float32Array.from(c.weight);
    const exact = initLora({ kind: 'pissa' }, shape, 3, weight);
    const gap = (n: number) => {
      const got = initLora(pissaNiter(n), shape, 3, weight);
      return maxGap(update(got.a, got.b, c), update(exact.a, exact.b, c));
    };
    expect(gap(0)).toBeGreaterThan(1e-3);
    expect(gap(16)).toBeLessThan(1e-5);
  });
});
