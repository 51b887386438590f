import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LoraLinear,
  Rng,
  exportAdapter,
  importAdapter,
  loadPeftAdapter,
  savePeftAdapter,
  tf,
  useBackend,
} from '../src/index.js';

function randn(shape: [number, number], seed: number): tf.Tensor2D {
  const rng = new Rng(seed);
  return tf.tensor2d(
    Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal()),
    shape,
  );
}

const fileFields: Parameters<typeof exportAdapter>[2] = {
  targetModules: ['c_attn'],
  bias: 'none',
  initLoraWeights: true,
  baseModelNameOrPath: null,
  taskType: 'CAUSAL_LM',
};

describe('PEFT adapters from and into live layers', () => {
  let dir = '';
  beforeAll(async () => {
    await useBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'lorafleet-bridge-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function makeLayers(): LoraLinear[] {
    return [0, 1].map((i) => {
      const weight = randn([8, 24], 100 + i); // Conv1D layout [in, out]
      const layer = new LoraLinear({
        name: `transformer.h.${i}.attn.c_attn`,
        weight,
        fanInFanOut: true,
      });
      weight.dispose();
      return layer;
    });
  }

  it('a saved adapter loads into fresh layers and gives identical outputs', async () => {
    const trained = makeLayers();
    for (const layer of trained) {
      layer.addAdapter(
        'task',
        { r: 4, alpha: 8, dropout: 0.05, rslora: true },
        { kind: 'gaussian' },
        9,
      );
      const b = layer.activeAdapter!.b;
      tf.tidy(() => b.assign(randn([24, 4], 7)));
    }
    const adapter = exportAdapter(trained, 'task', fileFields);
    expect(adapter.config).toMatchObject({
      r: 4,
      loraAlpha: 8,
      loraDropout: 0.05,
      useRslora: true,
      fanInFanOut: true,
    });
    await savePeftAdapter(join(dir, 'task'), adapter);

    const fresh = makeLayers();
    importAdapter(fresh, await loadPeftAdapter(join(dir, 'task')), 'task');
    const x = randn([5, 8], 1);
    for (let i = 0; i < 2; i++) {
      const [want, got] = [trained[i]!.forward(x), fresh[i]!.forward(x)];
      expect(fresh[i]!.activeAdapter!.scaling).toBe(trained[i]!.activeAdapter!.scaling);
      expect([...got.dataSync()]).toEqual([...want.dataSync()]);
      tf.dispose([want, got]);
    }
    x.dispose();
    [...trained, ...fresh].forEach((l) => l.dispose());
  });

  it('refuses an adapter for another model, naming the modules', async () => {
    const layers = makeLayers();
    layers.forEach((l) =>
      l.addAdapter('a', { r: 2, alpha: 2, dropout: 0, rslora: false }, { kind: 'kaiming' }, 0),
    );
    const adapter = exportAdapter(layers, 'a', fileFields);
    const other = [makeLayers()[0]!];
    expect(() => importAdapter(other, adapter, 'b')).toThrow(
      /modules the model lacks: transformer\.h\.1\.attn\.c_attn/,
    );
    const wide = new LoraLinear({
      name: 'transformer.h.0.attn.c_attn',
      weight: randn([8, 12], 3),
      fanInFanOut: true,
    });
    const narrow = new LoraLinear({
      name: 'transformer.h.1.attn.c_attn',
      weight: randn([8, 24], 3),
      fanInFanOut: true,
    });
    expect(() => importAdapter([wide, narrow], adapter, 'b')).toThrow(
      /adapter is for \[24, 8\] \(out, in\), the layer is \[12, 8\]/,
    );
    [...layers, ...other, wide, narrow].forEach((l) => l.dispose());
  });
});
