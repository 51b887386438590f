// The conformance suite of the LoRA math: every compute backend runs the same
// checks, with the tolerances and skips of its descriptor
// (src/backend/descriptors/). LORAFLEET_BACKENDS picks the backends; the
// default is cpu, wasm and webgpu, which runs its WGSL for real on
// SwiftShader (Vulkan on the CPU) where there is no GPU: see
// src/testing/vulkan-driver.ts. test/backend-conformance.test.ts adds the
// model-level checks (training steps, eval loss, generation). Values are read
// with `await data()` only: on webgpu under Node.js a GPU tensor cannot be
// read synchronously.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LoraLinear,
  TrainableParameters,
  type LoraSettings,
  Rng,
  backendDescriptor,
  lossAndGradsAsync,
  NF4_BLOCK,
  type BaseDtype,
  dequantizeNf4Into,
  packBase,
  packHalves,
  quantizeNf4,
  readParametersAsync,
  unpackBase,
  unpackHalvesInto,
  releaseWebGpu,
  tf,
  useBackend,
  webGpuErrors,
} from '../src/index.js';
import { testBackends } from '../src/testing/index.js';

const backends = testBackends();

function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rng = new Rng(seed);
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = rng.normal() * scale;
  return tf.tensor(data, shape);
}

async function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const value = (await d.data())[0]!;
  d.dispose();
  return value;
}

async function scalar(f: () => tf.Tensor): Promise<number> {
  const t = tf.tidy(f);
  const value = (await t.data())[0]!;
  t.dispose();
  return value;
}

/** A layer of the given orientation with a random weight, bias and one adapter with random B. */
function makeLayer(fanInFanOut: boolean, settings: LoraSettings, seed = 1): LoraLinear {
  const [inF, outF] = [6, 5];
  const weight = randn(fanInFanOut ? [inF, outF] : [outF, inF], seed) as tf.Tensor2D;
  const bias = randn([outF], seed + 1) as tf.Tensor1D;
  const layer = new LoraLinear({ name: 'h.0.attn.c_attn', weight, bias, fanInFanOut });
  tf.dispose([weight, bias]);
  layer.addAdapter('default', settings, { kind: 'kaiming' }, seed);
  // B starts at zero, which would make dA vanish: give it values for the checks.
  const b = layer.activeAdapter!.b;
  tf.tidy(() => b.assign(randn(b.shape, seed + 2, 0.5) as tf.Tensor2D));
  return layer;
}

/** W [rows, cols] as stored in `dtype` and read back in f32, computed on the host. */
function roundTrip(
  w: Float32Array,
  dtype: Exclude<BaseDtype, 'f32'>,
  [rows, cols]: [number, number],
  fanInFanOut: boolean,
): Float32Array {
  const back = new Float32Array(w.length);
  if (dtype !== 'nf4') {
    unpackHalvesInto(packHalves(w, dtype), dtype, back);
    return back;
  }
  // NF4 quantizes [out, in]: a fan-in-fan-out W ([in, out]) is transposed first.
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c]!;
  dequantizeNf4Into(quantizeNf4(fanInFanOut ? t : w), [rows, cols], fanInFanOut, back);
  return back;
}

/** Bytes of n values of W as stored in `dtype`. */
const packedBytes = (n: number, dtype: Exclude<BaseDtype, 'f32'>) =>
  dtype === 'nf4' ? 4 * Math.ceil(n / 8) + 4 * Math.ceil(n / NF4_BLOCK) : 4 * Math.ceil(n / 2);

/** 0.5 ||y - t||^2: central differences are exact on a quadratic up to rounding. */
function lossOf(layer: LoraLinear, x: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.mul(0.5, tf.sum(tf.square(tf.sub(layer.forward(x), target)))) as tf.Scalar;
}

for (const backend of backends) {
  const { tolerance: tol, skip } = backendDescriptor(backend);
  describe(`LoRA conformance on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
      // tfjs-webgpu runs ops on small CPU-resident inputs on the CPU: test the GPU kernels.
      if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
    });
    afterAll(async () => {
      tf.disposeVariables();
      if (backend === 'webgpu') {
        // A shader that failed to compile or a bad dispatch shows only here.
        expect(webGpuErrors()).toEqual([]);
        tf.env().set('WEBGPU_CPU_FORWARD', true);
        await useBackend('cpu');
        releaseWebGpu();
      }
    });

    for (const fanInFanOut of [false, true]) {
      for (const rslora of [false, true]) {
        it.skipIf(skip.gradients !== undefined)(
          `gradients of A and B match finite differences (fanInFanOut=${fanInFanOut}, rslora=${rslora})`,
          async () => {
            const settings = { r: 3, alpha: 6, dropout: 0, rslora };
            const layer = makeLayer(fanInFanOut, settings);
            const x = randn([4, 6], 11);
            const target = randn([4, 5], 12);
            const params = TrainableParameters.fromLoraLayers([layer]);
            const { grads } = await lossAndGradsAsync(params, () => lossOf(layer, x, target));
            const base = await readParametersAsync(params);
            const eps = 1e-2;
            let worst = 0;
            for (let i = 0; i < params.size; i++) {
              const probe = base.slice();
              probe[i] = base[i]! + eps;
              params.write(probe);
              const up = await scalar(() => lossOf(layer, x, target));
              probe[i] = base[i]! - eps;
              params.write(probe);
              const down = await scalar(() => lossOf(layer, x, target));
              const numeric = (up - down) / (2 * eps);
              worst = Math.max(
                worst,
                Math.abs(numeric - grads[i]!) / Math.max(1, Math.abs(numeric)),
              );
            }
            params.write(base);
            expect(worst).toBeLessThan(tol.gradient);
            // The check is not vacuous: the gradients are far from zero.
            expect(Math.max(...grads.map(Math.abs))).toBeGreaterThan(0.1);
            layer.dispose();
            tf.dispose([x, target]);
          },
          180_000, // SwiftShader on a loaded machine: 66 GPU round trips
        );
      }

      it.skipIf(skip.merge !== undefined)(
        `merged output equals unmerged output, and unmerge restores W (fanInFanOut=${fanInFanOut})`,
        async () => {
          const layer = makeLayer(fanInFanOut, { r: 4, alpha: 8, dropout: 0.1, rslora: false });
          const x = randn([7, 6], 21);
          const w0 = layer.weight.clone();
          const unmerged = layer.forward(x);
          const baseOnly = tf.tidy(() => {
            layer.setActive(null);
            const y = layer.forward(x);
            layer.setActive('default');
            return y;
          });
          expect(await maxAbsDiff(unmerged, baseOnly)).toBeGreaterThan(1e-2);
          layer.merge();
          expect(layer.merged).toBe(true);
          const merged = layer.forward(x);
          expect(await maxAbsDiff(merged, unmerged)).toBeLessThan(tol.merge);
          expect(() => layer.merge()).toThrow(/already merged/);
          layer.unmerge();
          expect(await maxAbsDiff(layer.weight, w0)).toBeLessThan(tol.merge);
          expect(() => layer.unmerge()).toThrow(/nothing is merged/);
          tf.dispose([x, w0, unmerged, baseOnly, merged]);
          layer.dispose();
        },
      );

      it.skipIf(skip.pissa !== undefined).each(['pissa', 'olora'] as const)(
        `%s keeps the output at step 0 and W = residual + scaling B A (fanInFanOut=${fanInFanOut})`,
        async (kind) => {
          const weight = randn(fanInFanOut ? [12, 9] : [9, 12], 31) as tf.Tensor2D;
          const layer = new LoraLinear({ name: 'q', weight, fanInFanOut });
          const x = randn([5, 12], 32);
          const before = layer.forward(x);
          await layer.addAdapterAsync(
            kind,
            { r: 4, alpha: 8, dropout: 0, rslora: false },
            { kind },
            0,
          );
          const residual = layer.weight;
          expect(await maxAbsDiff(residual, weight)).toBeGreaterThan(0.5);
          const rebuilt = tf.add(residual, layer.deltaWeight(kind));
          expect(await maxAbsDiff(rebuilt, weight)).toBeLessThan(tol.pissa);
          const after = layer.forward(x);
          expect(await maxAbsDiff(after, before)).toBeLessThan(tol.pissa);
          tf.dispose([weight, x, before, rebuilt, after]);
          layer.dispose();
        },
      );
    }

    for (const dtype of ['bf16', 'f16', 'nf4'] as const) {
      it.skipIf(skip.halfBase !== undefined)(
        `a base W stored as ${dtype} computes as its rounded f32 copy, gradients through it included`,
        async () => {
          // Two stacked layers, so the gradients of the first pass through the
          // second one's W (the custom gradient of the unpacked matmul).
          const settings = { r: 2, alpha: 4, dropout: 0, rslora: false };
          const make = (seed: number, fanInFanOut: boolean) => {
            const w = randn([6, 6], seed) as tf.Tensor2D;
            const layer = new LoraLinear({ name: `l${seed}`, weight: w, fanInFanOut });
            w.dispose();
            layer.addAdapter('default', settings, { kind: 'kaiming' }, seed);
            const b = layer.activeAdapter!.b;
            tf.tidy(() => b.assign(randn([6, 2], seed + 2, 0.5) as tf.Tensor2D));
            return layer;
          };
          const half = [make(71, true), make(72, false)];
          // The reference: the same W rounded to `dtype` on the host, kept in f32.
          const rounded = [make(71, true), make(72, false)];
          for (const layer of rounded) {
            const w = (await layer.weight.data()) as Float32Array;
            const back = roundTrip(w, dtype, [6, 6], layer.fanInFanOut);
            expect(back).not.toEqual(w); // rounding happened: the check is not vacuous
            tf.tidy(() => layer.weight.assign(tf.tensor2d(back, [6, 6])));
          }
          const bytesBefore = tf.memory().numBytes;
          for (const layer of half) await layer.storeBaseAs(dtype);
          expect(half[0]!.baseDtype).toBe(dtype);
          expect(bytesBefore - tf.memory().numBytes).toBe(2 * (36 * 4 - packedBytes(36, dtype)));
          expect(() => half[0]!.merge()).toThrow(
            /stored as (bf16|f16|nf4) \(--base-dtype\).*--base-dtype f32/,
          );
          const x = randn([4, 6], 73);
          const target = randn([4, 6], 74);
          const loss = (layers: LoraLinear[]) =>
            tf.mul(
              0.5,
              tf.sum(tf.square(tf.sub(layers[1]!.forward(layers[0]!.forward(x)), target))),
            ) as tf.Scalar;
          const got = await lossAndGradsAsync(TrainableParameters.fromLoraLayers(half), () =>
            loss(half),
          );
          const want = await lossAndGradsAsync(TrainableParameters.fromLoraLayers(rounded), () =>
            loss(rounded),
          );
          expect(Math.abs(got.loss - want.loss)).toBeLessThan(tol.merge * Math.max(1, want.loss));
          let worst = 0;
          for (let i = 0; i < want.grads.length; i++)
            worst = Math.max(worst, Math.abs(got.grads[i]! - want.grads[i]!));
          expect(worst).toBeLessThan(tol.merge * Math.max(1, ...want.grads.map(Math.abs)));
          tf.dispose([x, target]);
          [...half, ...rounded].forEach((l) => l.dispose());
        },
      );
    }

    it.skipIf(skip.halfBase !== undefined)(
      'unpacks W stored as bf16, f16 and nf4 in the kernel as on the host, odd shapes and both orientations',
      async () => {
        for (const dtype of ['bf16', 'f16', 'nf4'] as const) {
          for (const [shape, fanInFanOut] of [
            [[7, 37], false],
            [[37, 7], true],
            [[1, 65], false],
            [[3, 130], true],
          ] as [[number, number], boolean][]) {
            const source = randn(shape, shape[0] + shape[1]);
            const w = (await source.data()) as Float32Array;
            source.dispose();
            const packed = packBase(w, dtype, shape, fanInFanOut);
            const got = unpackBase(packed);
            expect(got.shape).toEqual(shape);
            expect(await got.data()).toEqual(roundTrip(w, dtype, shape, fanInFanOut));
            tf.dispose([got, ...Object.values(packed.unpack.inputs)]);
          }
        }
      },
    );

    it.skipIf(skip.adapters !== undefined)(
      'switches between named adapters over one base',
      async () => {
        const layer = makeLayer(false, { r: 2, alpha: 4, dropout: 0, rslora: false });
        const x = randn([3, 6], 41);
        const first = layer.forward(x);
        layer.addAdapter(
          'second',
          { r: 3, alpha: 3, dropout: 0, rslora: true },
          { kind: 'gaussian' },
          5,
        );
        expect(layer.activeAdapter?.name).toBe('second');
        const b = layer.activeAdapter!.b;
        tf.tidy(() => b.assign(randn(b.shape, 42) as tf.Tensor2D));
        const second = layer.forward(x);
        expect(await maxAbsDiff(first, second)).toBeGreaterThan(1e-2);
        layer.setActive('default');
        const again = layer.forward(x);
        expect(await maxAbsDiff(first, again)).toBe(0);
        expect(() => layer.setActive('missing')).toThrow(
          /no adapter "missing" \(have: default, second\)/,
        );
        tf.dispose([x, first, second, again]);
        layer.dispose();
      },
    );

    it.skipIf(skip.dropout !== undefined)(
      'dropout only acts in training and is reproducible by seed',
      async () => {
        const layer = makeLayer(false, { r: 2, alpha: 4, dropout: 0.5, rslora: false });
        const x = randn([8, 6], 51);
        const evalA = layer.forward(x);
        const evalB = layer.forward(x);
        const trainA = layer.forward(x, { training: true, dropoutSeed: 7 });
        const trainB = layer.forward(x, { training: true, dropoutSeed: 7 });
        expect(await maxAbsDiff(evalA, evalB)).toBe(0);
        expect(await maxAbsDiff(trainA, evalA)).toBeGreaterThan(1e-3);
        expect(await maxAbsDiff(trainA, trainB)).toBe(0);
        tf.dispose([x, evalA, evalB, trainA, trainB]);
        layer.dispose();
      },
    );

    it.skipIf(skip.leaks !== undefined)('a training step leaks no tensor', async () => {
      const layer = makeLayer(true, { r: 2, alpha: 4, dropout: 0.1, rslora: false });
      const params = TrainableParameters.fromLoraLayers([layer]);
      const x = randn([4, 6], 61);
      const target = randn([4, 5], 62);
      const step = async () => {
        const { grads } = await lossAndGradsAsync(params, () => lossOf(layer, x, target));
        const values = await readParametersAsync(params);
        for (let i = 0; i < values.length; i++) values[i] = values[i]! - 0.01 * grads[i]!;
        params.write(values);
      };
      await step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) await step();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, target]);
      layer.dispose();
    });
  });
}
