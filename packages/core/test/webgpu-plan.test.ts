// The plan machinery of the hand-scheduled step (src/backend/webgpu-plan/):
// the liveness allocator (pure), the uniform layout against tfjs's own
// bytes, and a recorded plan replayed on real WebGPU execution (SwiftShader)
// against the same kernels run through tfjs.
import { describe, expect, it } from 'vitest';
import {
  LORAFLEET_MATMUL,
  PlanOps,
  PlanRecorder,
  type RecordingBackend,
  type UniformField,
  allocateByLiveness,
  packUniforms,
  programUniforms,
  tf,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

describe('allocateByLiveness', () => {
  it('shares a buffer between values whose lives do not overlap, never between those that do', () => {
    const uses = [
      { bytes: 64, first: 0, last: 1, pinned: false }, // a
      { bytes: 64, first: 1, last: 2, pinned: false }, // b: overlaps a at step 1
      { bytes: 32, first: 2, last: 3, pinned: false }, // c: a is free by then
      { bytes: 16, first: 3, last: 3, pinned: true }, // d: lives throughout
    ];
    const { slot, sizes } = allocateByLiveness(uses, 4);
    expect(slot[0]).not.toBe(slot[1]);
    expect(slot[2]).toBe(slot[0]);
    expect(new Set(slot).size).toBe(3);
    expect(slot.filter((s) => s === slot[3])).toHaveLength(1);
    for (const [i, u] of uses.entries()) expect(sizes[slot[i]!]!).toBeGreaterThanOrEqual(u.bytes);
  });

  it('takes the smallest free buffer that fits', () => {
    const uses = [
      { bytes: 1000, first: 0, last: 0, pinned: false },
      { bytes: 100, first: 0, last: 0, pinned: false },
      { bytes: 90, first: 1, last: 1, pinned: false },
      { bytes: 900, first: 1, last: 1, pinned: false },
    ];
    const { slot, sizes } = allocateByLiveness(uses, 2);
    expect(slot[2]).toBe(slot[1]);
    expect(slot[3]).toBe(slot[0]);
    expect(sizes).toEqual([1000, 100]);
  });
});

describe('a recorded plan on webgpu', () => {
  webGpuSuite();

  it('lays out uniforms byte for byte as tfjs does', () => {
    const backend = tf.backend() as unknown as {
      makeUniforms(fields: UniformField[]): unknown;
      queue: { writeBuffer(...args: unknown[]): void };
    };
    const cases: UniformField[][] = [
      programUniforms(
        { outputShape: [5, 7], size: true },
        [[5, 3], [3, 7], [7]],
        [5, 7],
        [
          { type: 'int32', data: [5] },
          { type: 'float32', data: [0.5] },
        ],
      ),
      programUniforms({ outputShape: [2, 3, 4, 5, 6] }, [[2, 3, 4, 5, 6], [6]], [2, 3, 4, 5, 6]),
      [
        { type: 'int32', data: [1, 2, 3] },
        { type: 'float32', data: [4] },
        { type: 'uint32', data: [5, 6] },
      ],
    ];
    const write = backend.queue.writeBuffer;
    try {
      for (const fields of cases) {
        let written: ArrayBuffer | undefined;
        backend.queue.writeBuffer = (_buffer: unknown, _offset: unknown, data: unknown) => {
          written = (data as ArrayBuffer).slice(0);
        };
        backend.makeUniforms(fields.map((f) => ({ ...f, data: [...f.data] })));
        expect(new Uint8Array(packUniforms(fields))).toEqual(new Uint8Array(written!));
      }
    } finally {
      backend.queue.writeBuffer = write;
    }
  });

  it('replays a recorded product and add as tfjs computes them, with new inputs each time', async () => {
    const backend = tf.backend() as unknown as RecordingBackend;
    const w = tf.tensor2d(
      Float32Array.from({ length: 5 * 7 }, (_, i) => Math.sin(i)),
      [5, 7],
    );
    const rec = new PlanRecorder(backend);
    const ops = new PlanOps(rec);
    const x = rec.input('x', [3, 5], 'float32');
    const y = ops.mm(x, w, { alpha: 0.5 }); // [3, 7]
    const z = ops.add(y, y);
    const out = tf.zeros([3, 7]);
    rec.copy(z, out);
    const plan = rec.finish();
    try {
      expect(plan.dispatches).toBe(2);
      for (const seed of [1, 2]) {
        const xs = Float32Array.from({ length: 15 }, (_, i) => Math.cos(i * seed));
        plan.replay({ x: xs });
        const want = tf.tidy(() =>
          tf
            .matMul(tf.tensor2d(xs, [3, 5]), w)
            .mul(0.5)
            .mul(2),
        );
        const got = await plan.read(out);
        expect(Array.from(got)).toEqual(Array.from((await want.data()) as Float32Array));
        want.dispose();
      }
      expect(() => plan.replay({})).toThrow(/input "x" was not given/);
    } finally {
      plan.dispose();
      tf.dispose([w, out]);
    }
  });

  // DoRA's programs (webgpu-kernels/dora.ts) against tfjs ops, on shapes past one workgroup of 64
  // (rows, columns and the reduced length) and not a multiple of it.
  it("computes DoRA's norms, scales, mix and magnitude gradient as tfjs ops do", async () => {
    const [N, C, K] = [67, 70, 133];
    const wave = (length: number, k: number) =>
      Float32Array.from({ length }, (_, i) => Math.sin(i * k + 1));
    const w = tf.tensor2d(wave(C * K, 0.3), [C, K]); // [out, in]
    const d = tf.tensor2d(
      wave(C * K, 0.7).map((v) => v * 0.1),
      [C, K],
    );
    const [wT, dT] = [w.transpose(), d.transpose()]; // [in, out]: GPT-2's Conv1D orientation
    const [m, bias] = [tf.tensor1d(wave(C, 1.1)), tf.tensor1d(wave(C, 0.5))];
    const rec = new PlanRecorder(tf.backend() as unknown as RecordingBackend);
    const ops = new PlanOps(rec);
    const [x, z, z2] = ['x', 'z', 'z2'].map((name) => rec.input(name, [N, C], 'float32'));
    const n = ops.doraNorms(w, d, false);
    const results = {
      n,
      nColumns: ops.doraNorms(wT, dT, true),
      scaled: ops.doraScale(x!, m, n, -1, bias),
      mix: ops.doraMix(x!, z!, z2!, m, n),
      dm: ops.doraMagnitudeGrad(x!, z!, z2!, n),
      dmOne: ops.doraMagnitudeGrad(x!, z!, null, n),
    };
    const outs = Object.fromEntries(
      Object.entries(results).map(([k, v]) => [k, tf.zeros(v.shape)] as const),
    );
    for (const [k, v] of Object.entries(results)) rec.copy(v, outs[k]!);
    const plan = rec.finish();
    // (the references run on tfjs's encoder before the replay, as a step's other work does)
    const inputs = { x: wave(N * C, 0.9), z: wave(N * C, 1.3), z2: wave(N * C, 1.7) };
    const want = tf.tidy(() => {
      const [tx, tz, tz2] = [inputs.x, inputs.z, inputs.z2].map((v) => tf.tensor2d(v, [N, C]));
      const norms = tf.sqrt(tf.sum(tf.square(w.add(d)), 1));
      const g = m.div(norms);
      return {
        n: norms,
        nColumns: norms,
        scaled: tx!.mul(g.sub(1)).add(bias),
        mix: tx!.add(g.sub(1).mul(tz!)).add(g.mul(tz2!)),
        dm: tf.sum(tx!.mul(tz!.add(tz2!)), 0).div(norms),
        dmOne: tf.sum(tx!.mul(tz!), 0).div(norms),
      };
    });
    try {
      plan.replay(inputs);
      for (const [k, t] of Object.entries(want)) {
        const [got, ref] = [await plan.read(outs[k]!), (await t.data()) as Float32Array];
        const scale = Math.max(...ref.map(Math.abs));
        const diff = Math.max(...got.map((v, i) => Math.abs(v - ref[i]!)));
        expect(got.length, k).toBe(ref.length);
        expect(diff / scale, k).toBeLessThan(1e-5);
      }
    } finally {
      plan.dispose();
      tf.dispose([w, d, wT, dT, m, bias, ...Object.values(outs), ...Object.values(want)]);
    }
  });

  // tfjs made `out` with its values on the CPU; the replay uploads it. Into a buffer from tfjs's
  // pool (one of out's size freed just before), tfjs queues that upload on its own encoder: it
  // must run before the replay's copy into `out`, not after it.
  it('a copy into a tensor first uploaded at replay keeps what the replay wrote', async () => {
    const rec = new PlanRecorder(tf.backend() as unknown as RecordingBackend);
    const x = rec.input('x', [2, 3], 'float32');
    const y = new PlanOps(rec).scale(x, 2);
    const out = tf.zeros([2, 3]);
    rec.copy(y, out);
    const plan = rec.finish();
    const other = tf.tidy(() => tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]))); // on the GPU
    tf.tidy(() => other.slice([0, 0], [2, 3]).add(1)); // a GPU buffer of out's size, freed
    try {
      plan.replay({ x: Float32Array.of(1, 2, 3, 4, 5, 6) });
      expect(Array.from(await plan.read(out))).toEqual([2, 4, 6, 8, 10, 12]);
    } finally {
      plan.dispose();
      tf.dispose([out, other]);
    }
  });

  it('refuses to replay once a tensor it binds is gone', () => {
    const backend = tf.backend() as unknown as RecordingBackend;
    const w = tf.ones([4, 4]);
    const rec = new PlanRecorder(backend);
    const x = rec.input('x', [2, 4], 'float32');
    rec.kernel(
      LORAFLEET_MATMUL,
      { a: x, b: w },
      { transposeA: false, transposeB: false, alpha: 1, beta: 0, transposeL: false },
    );
    const plan = rec.finish();
    w.dispose();
    expect(() => plan.replay({ x: new Float32Array(8) })).toThrow(
      /was disposed: record the plan again/,
    );
    plan.dispose();
  });
});
