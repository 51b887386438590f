// OLoRA (PEFT's init_lora_weights="olora") against PEFT itself, and the QR
// decomposition it rests on against torch.linalg.qr (test/reference/olora.py):
// the same Q and R (LAPACK's signs included), the same A, B and residual base
// weight; and a LoraLinear initialised with it keeps its output at step 0.
import { describe, expect, it } from 'vitest';
import { oloraInit } from '../src/lora/init.js';
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

const reference = referenceJson<{
  qr: { q: number[]; r: number[] }[];
  olora: { a: number[]; b: number[]; residual: number[] }[];
}>('olora', { qr: QR_CASES, olora: OLORA_CASES });

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
