import { describe, expect, it } from 'vitest';
import {
  ADAMW_DEFAULTS,
  adamWStep,
  cloneAdamWState,
  createAdamWState,
} from '../src/optim/adamw.js';
import { clipGlobalNorm, globalNorm } from '../src/optim/clip.js';
import { loraplusLrScales } from '../src/optim/loraplus.js';
import { takesWeightDecay, weightDecayScales } from '../src/optim/weight-decay.js';
import { tf } from '../src/backend/tf.js';
import { useBackend } from '../src/index.js';
import { TrainableParameters } from '../src/lora/params.js';
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

  // LoRA+'s groups are torch parameter groups of their own lr: element i with factor f steps
  // exactly as a one-element AdamW at lr * f would, weight decay included.
  it('with a learning-rate factor per element, each element steps as AdamW at lr times it', () => {
    const options = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
    const scales = Float64Array.from([1, 16, 2.5, 1]);
    const start = [1.0, -2.0, 0.5, 0.25];
    const params = Float32Array.from(start);
    const state = createAdamWState(4);
    const alone = start.map((p) => ({ p: Float32Array.of(p), s: createAdamWState(1) }));
    const grads = [
      [0.5, 0.1, -3.0, 0.0],
      [-0.25, 0.2, 1.0, 1.0],
      [1.0, -0.3, 2.0, -1.0],
    ];
    for (const g of grads) {
      adamWStep(params, Float32Array.from(g), state, options, 0.05, scales);
      alone.forEach((e, i) =>
        adamWStep(e.p, Float32Array.of(g[i]!), e.s, options, 0.05 * scales[i]!),
      );
      expect(Array.from(params)).toEqual(alone.map((e) => e.p[0]));
    }
    expect(params[1]).not.toBeCloseTo(start[1]!, 1); // the x16 element moved ~16 x 0.05 x 3
    const ones = Float32Array.from(start);
    const plain = Float32Array.from(start);
    const [s1, s2] = [createAdamWState(4), createAdamWState(4)];
    adamWStep(ones, Float32Array.from(grads[0]!), s1, options, 0.05, new Float64Array(4).fill(1));
    adamWStep(plain, Float32Array.from(grads[0]!), s2, options, 0.05);
    expect(Array.from(ones)).toEqual(Array.from(plain));
    expect(() =>
      adamWStep(ones, new Float32Array(4), s1, options, 0.05, new Float64Array(3)),
    ).toThrow(/3 learning-rate factors for 4 parameters/);
  });

  it("LoRA+ groups as PEFT's create_loraplus_optimizer: lora_B and 1-D parameters fast", async () => {
    await useBackend('cpu');
    const v = (shape: number[]) => tf.variable(tf.zeros(shape));
    const named: [string, tf.Variable][] = [
      ['m.lora_A', v([2, 3])],
      ['m.lora_B', v([3, 2])],
      ['m.lora_magnitude_vector', v([3])],
      ['m.base_layer.bias', v([3])],
      ['e.lora_embedding_A', v([2, 5])],
      ['e.lora_embedding_B', v([4, 2])],
      ['lm_head.weight', v([5, 4])],
      ['model.norm.weight', v([4])],
    ];
    const params = new TrainableParameters(named);
    const scales = loraplusLrScales(params, 16)!;
    const fast = new Set([
      'm.lora_B',
      'm.lora_magnitude_vector',
      'm.base_layer.bias',
      'model.norm.weight',
    ]);
    for (const slot of params.slots) {
      const want = fast.has(slot.name) ? 16 : 1;
      expect(Array.from(scales.subarray(slot.offset, slot.offset + slot.size)), slot.name).toEqual(
        Array<number>(slot.size).fill(want),
      );
    }
    expect(loraplusLrScales(params, 1)).toBeNull();
    expect(() => loraplusLrScales(params, 0)).toThrow(/must be a finite number > 0, got 0/);
    tf.dispose(named.map(([, x]) => x));
  });

  it('with a weight-decay factor per element, a 0 steps as AdamW without decay', () => {
    const options = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const decay = Float64Array.from([1, 0, 1, 0]);
    const lr = Float64Array.from([1, 1, 16, 16]);
    const start = [1.0, -2.0, 0.5, 0.25];
    const params = Float32Array.from(start);
    const state = createAdamWState(4);
    const alone = start.map((p) => ({ p: Float32Array.of(p), s: createAdamWState(1) }));
    for (const g of [
      [0.5, 0.1, -3.0, 0.0],
      [-0.25, 0.2, 1.0, 1.0],
    ]) {
      adamWStep(params, Float32Array.from(g), state, options, 0.05, lr, decay);
      alone.forEach((e, i) => {
        const own = { ...options, weightDecay: options.weightDecay * decay[i]! };
        adamWStep(e.p, Float32Array.of(g[i]!), e.s, own, 0.05 * lr[i]!);
      });
      expect(Array.from(params)).toEqual(alone.map((e) => e.p[0]));
    }
    // Decay alone (a zero gradient): the exempt element does not shrink.
    const still = Float32Array.of(1, 1);
    adamWStep(
      still,
      new Float32Array(2),
      createAdamWState(2),
      options,
      0.05,
      null,
      Float64Array.of(1, 0),
    );
    expect(Array.from(still)).toEqual([Math.fround(1 - 0.05 * 0.1), 1]);
    expect(() =>
      adamWStep(
        still,
        new Float32Array(2),
        createAdamWState(2),
        options,
        0.05,
        null,
        new Float64Array(3),
      ),
    ).toThrow(/3 weight-decay factors for 2 parameters/);
  });

  it("exempts from weight decay what transformers' Trainer does: biases and norm weights", async () => {
    const exempt = [
      'model.layers.0.self_attn.q_proj.base_layer.bias',
      'transformer.h.0.attn.c_attn.bias',
      'model.layers.0.input_layernorm.weight',
      'model.layers.0.post_attention_layernorm.weight',
      'model.layers.1.pre_feedforward_layernorm.weight', // Gemma 2
      'model.layers.0.self_attn.q_norm.weight', // Qwen3, Gemma 3, OLMo 2
      'model.norm.weight',
      'transformer.h.0.ln_1.weight', // GPT-2's nn.LayerNorm modules
      'transformer.ln_f.weight',
    ];
    const decays = [
      'model.layers.0.self_attn.q_proj.lora_A',
      'model.layers.0.self_attn.q_proj.lora_B',
      'model.layers.0.self_attn.q_proj.lora_magnitude_vector',
      'model.embed_tokens.lora_embedding_A',
      'lm_head.weight',
      'model.embed_tokens.weight',
      'transformer.h.0.mlp.c_fc.weight',
      'model.layers.0.self_attn.normalizer_scale', // "norm" inside a word: no pattern matches
    ];
    expect(exempt.filter(takesWeightDecay)).toEqual([]);
    expect(decays.filter((n) => !takesWeightDecay(n))).toEqual([]);
    await useBackend('cpu');
    const named: [string, tf.Variable][] = [
      ['m.lora_A', tf.variable(tf.zeros([2, 3]))],
      ['model.norm.weight', tf.variable(tf.zeros([4]))],
    ];
    const params = new TrainableParameters(named);
    expect(Array.from(weightDecayScales(params)!)).toEqual([1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
    expect(weightDecayScales(new TrainableParameters(named.slice(0, 1)))).toBeNull();
    tf.dispose(named.map(([, x]) => x));
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
