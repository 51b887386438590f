// The Llama family on tfjs, with Hugging Face's semantics of
// LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
// GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, GraniteForCausalLM
// and SmolLM3ForCausalLM: pre-RMSNorm decoder layers, rotary positions,
// grouped-query attention (optional q/k/v bias, Qwen3's and Gemma 3's q/k
// norms, Mistral's sliding window, Gemma 2's and 3's on some layers, Gemma
// 3's with their own rotary base), SwiGLU MLP (Gemma: GeGLU, RMSNorm by
// 1 + weight, scaled embeddings; Gemma 2 and 3: norms after attention and
// MLP too; Gemma 2: soft-capped scores and logits; Granite: multipliers of
// the embeddings, scores, branch outputs and logits; SmolLM3: layers
// without the rotary embedding; Phi-3: fused q/k/v and gate/up projections,
// LongRoPE, a partial rotation; OLMo 2: norms after attention and MLP
// only, q/k norms over all heads; GLM: adjacent-pair rotation, fused
// gate_up_proj, GLM-4-0414's four norms), a tied or untied head. Its
// variables come from the weights in variables.ts.
import {
  type BaseDtype,
  type LoraEmbedding,
  type LoraLinear,
  causalAttention,
  causalAttentionComposed,
  addSame,
  checkpoint,
  gated,
  reshapeTo,
  scaleBy,
  tf,
} from '@lorafleet/core';
import { checkContext, documentAttention, documentLayout } from '../packed-documents.js';
import { neftuneNoise } from '../neftune.js';
import type {
  CachedPass,
  CausalLM,
  ForwardPassOptions,
  LayerKv,
  ModelConfig,
  WeightMap,
} from '../causal-lm.js';
import { attentionBias } from '../kv-cache.js';
import {
  type LlamaConfig,
  attentionScale,
  layerRotates,
  layerWindow,
  llamaModelConfig,
} from './config.js';
import { applyRotary, inverseFrequencies, longFactors, rotaryScale, rotaryTables } from './rope.js';
import {
  LM_HEAD,
  embedName,
  finalNormName,
  layerPath,
  layerLinearLayers,
  layerNormNames,
  layerVariables,
  llamaWeightShapes,
} from './weights.js';
import { countElements, readNamedWeights } from '../weight-values.js';
import type { ScheduledStepRecipe } from '../scheduled-step.js';
import { llamaScheduledStep } from './scheduled.js';
import { type LlamaLayer, llamaVariables } from './variables.js';

export type { LlamaLayer } from './variables.js';
import { type LayerPass, dropping, rotaryTensors, withRotaryTensors } from './layer-pass.js';
import { repeatKv, rmsNorm, rmsNormComposed, rmsNormFused } from './layer-ops.js';

export class LlamaModel implements CausalLM {
  readonly config: LlamaConfig;
  readonly modelConfig: ModelConfig<LlamaConfig>;
  readonly embed: tf.Variable<tf.Rank.R2>; // [V, C]
  /** embed with its LoRA adapters (PEFT's lora.Embedding); a tied head reads embed itself. */
  readonly tokenEmbedding: LoraEmbedding;
  readonly layers: LlamaLayer[];
  readonly norm: tf.Variable<tf.Rank.R1>; // [C]
  /** The untied head [V, C]; null when tied to the embedding. */
  readonly lmHead: tf.Variable<tf.Rank.R2> | null;
  private readonly invFreq: Float64Array;
  /** LongRoPE's long-factor frequencies, for passes past original_max_position_embeddings (else null). */
  private readonly longInvFreq: Float64Array | null;
  /** Gemma 3's sliding-window layers' inverse frequencies (rope_local_base_freq), or null. */
  private readonly localInvFreq: Float64Array | null;
  /** Gemma on webgpu: 1 + weight of each frozen norm, for the fused kernels. */
  private readonly onePlus = new Map<tf.Variable, tf.Tensor1D>();
  /** The hand-scheduled LoRA step on webgpu (scheduled.ts). */
  readonly scheduledStep: ScheduledStepRecipe = llamaScheduledStep(this);

  /** `weights` must hold every tensor of llamaWeightShapes(config), checked by the loader. */
  constructor(config: LlamaConfig, weights: WeightMap, baseDtype: BaseDtype = 'f32') {
    this.config = config;
    this.modelConfig = llamaModelConfig(config);
    this.invFreq = inverseFrequencies(config);
    this.longInvFreq =
      config.ropeScaling?.type === 'longrope' ? inverseFrequencies(config, Infinity) : null;
    this.localInvFreq =
      config.localRopeTheta === null
        ? null
        : inverseFrequencies({ ...config, ropeTheta: config.localRopeTheta, ropeScaling: null });
    const built = llamaVariables(config, weights, baseDtype);
    this.embed = built.embed;
    this.tokenEmbedding = built.tokenEmbedding;
    this.layers = built.layers;
    this.norm = built.norm;
    this.lmHead = built.lmHead;
    // Gemma: each norm's 1 + weight now, so that no recording makes it (normGamma).
    for (const norm of this.norms()) this.normGamma(norm);
  }

  /** Every RMSNorm weight. */
  private norms(): tf.Variable<tf.Rank.R1>[] {
    const perLayer = this.layers.flatMap((l) => [
      ...[l.inputNorm, l.attnOutNorm, l.qNorm, l.kNorm, l.preMlpNorm, l.mlpOutNorm],
    ]);
    return [...perLayer, this.norm].filter((v): v is tf.Variable<tf.Rank.R1> => v !== null);
  }

  linears(): LoraLinear[] {
    return this.layers.flatMap((l) => layerLinearLayers(l));
  }

  embeddings(): LoraEmbedding[] {
    return [this.tokenEmbedding];
  }

  /** CausalLM.namedWeights: packed linear weights left out. */
  namedWeights(): [string, tf.Variable][] {
    const byName = new Map<string, tf.Variable>([
      [embedName(this.config), this.embed],
      [finalNormName(this.config), this.norm],
    ]);
    if (this.lmHead) byName.set(LM_HEAD, this.lmHead);
    this.layers.forEach((l, i) => {
      const p = layerPath(this.config, i);
      const names = layerNormNames(this.config);
      const roles = [
        [names.input, l.inputNorm],
        [names.attnOut, l.attnOutNorm],
        [names.preMlp, l.preMlpNorm],
        [names.mlpOut, l.mlpOutNorm],
      ] as const;
      for (const [name, v] of roles) if (name && v) byName.set(`${p}.${name}.weight`, v);
      if (l.qNorm) byName.set(`${p}.self_attn.q_norm.weight`, l.qNorm);
      if (l.kNorm) byName.set(`${p}.self_attn.k_norm.weight`, l.kNorm);
    });
    for (const linear of this.linears()) {
      if (linear.baseDtype === 'f32') byName.set(`${linear.name}.weight`, linear.weight);
      if (linear.bias) byName.set(`${linear.name}.bias`, linear.bias);
    }
    return [...llamaWeightShapes(this.config).keys()].flatMap((name) => {
      const v = byName.get(name);
      return v ? [[name, v] as [string, tf.Variable]] : []; // packed linear weights left out
    });
  }

  async readWeights(): Promise<WeightMap> {
    return readNamedWeights(this.namedWeights());
  }

  /** From the config, so that it also counts a base stored in half precision. */
  parameterCount(): number {
    return countElements(llamaWeightShapes(this.config).values());
  }

  forward(ids: tf.Tensor2D, options: ForwardPassOptions = {}): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.hidden(ids, options); // [B, T, C]
      const [B, T, C] = h.shape;
      return this.logits(h.reshape([B * T, C])).reshape([
        B,
        T,
        this.config.vocabSize,
      ]) as tf.Tensor3D;
    });
  }

  hidden(ids: tf.Tensor2D, options: ForwardPassOptions = {}): tf.Tensor3D {
    const [B, T] = ids.shape;
    const packed = options.positionIds;
    checkContext(T, packed, this.config.maxPositions, 'max_position_embeddings');
    return tf.tidy(() => {
      const positions = Int32Array.from({ length: T }, (_, t) => t);
      const { x } = this.runLayers(ids, {
        // Packed documents: their own positions and attention within each [B, 1, T, *].
        ...(packed
          ? {
              ...this.rotations(packed, B, T), // [B, 1, T, D]
              documents: documentLayout(packed, B, T),
              bias: () => tf.zeros([1, 1, 1, 1]), // unused: documents attend within each
            }
          : {
              ...this.rotations(positions, 1, T), // [1, 1, T, D]
              bias: (window) => attentionBias(positions, [0], T, T, window), // [1, 1, T, T]
              causal: true,
            }),
        past: null,
        training: options.training ?? false,
        dropout: options.dropout ?? true,
        seed: options.seed ?? 0,
        neftuneAlpha: options.neftuneAlpha ?? 0,
        gradientCheckpointing: options.gradientCheckpointing ?? false,
      });
      return this.rmsNorm(x, this.norm) as tf.Tensor3D;
    });
  }

  logits(hidden: tf.Tensor2D): tf.Tensor2D {
    const { finalSoftcap: cap, logitsScaling } = this.config;
    return tf.tidy(() => {
      let logits: tf.Tensor2D = tf.matMul(hidden, this.lmHead ?? this.embed, false, true); // [N, V]
      if (logitsScaling !== 1) logits = tf.div(logits, logitsScaling); // Granite
      if (cap !== null) logits = tf.mul(tf.tanh(tf.div(logits, cap)), cap); // Gemma 2
      return logits;
    });
  }

  headVariables(): tf.Variable[] {
    return [this.lmHead ?? this.embed];
  }

  extend(pass: CachedPass): { last: tf.Tensor2D; layers: LayerKv[] } {
    const [B, T] = pass.ids.shape;
    const C = this.config.hiddenSize;
    const { x, layers } = this.runLayers(pass.ids, {
      ...this.rotations(pass.positionIds, B, T), // [B, 1, T, D]
      bias: pass.bias,
      past: pass.past,
      training: false,
      seed: 0,
    });
    const lastX = x.slice([0, T - 1, 0], [B, 1, C]).reshape([B, C]); // [B, C]
    return { last: this.rmsNorm(lastX, this.norm) as tf.Tensor2D, layers };
  }

  dispose(): void {
    // Not through namedWeights(): a linear layer's W may be stored packed (--base-dtype).
    this.tokenEmbedding.dispose();
    const others: (tf.Variable | null)[] = [this.embed, this.lmHead, ...this.norms()];
    tf.dispose(others.filter((v): v is tf.Variable => v !== null));
    tf.dispose([...this.onePlus.values()]);
    for (const l of this.linears()) l.dispose();
  }

  /** ids [B, T] -> the residual stream after every layer [B, T, C], and each layer's keys/values. */
  private runLayers(ids: tf.Tensor2D, pass: LayerPass): { x: tf.Tensor3D; layers: LayerKv[] } {
    const c = this.config;
    const [B, T] = ids.shape;
    let x = this.tokenEmbedding.lookup(ids.flatten()).reshape([B, T, c.hiddenSize]) as tf.Tensor3D;
    if (pass.training && pass.neftuneAlpha) x = neftuneNoise(x, pass.neftuneAlpha, pass.seed);
    if (c.embedScale !== 1) x = tf.mul(x, c.embedScale); // Gemma: times sqrt(C); Granite's multiplier
    const biases = new Map<number | null, tf.Tensor4D>(); // per window: Gemma 3 has two
    const biasOf = (w: number | null) => biases.get(w) ?? biases.set(w, pass.bias(w)).get(w)!;
    const layers: LayerKv[] = [];
    const recompute = pass.training && pass.gradientCheckpointing === true;
    this.layers.forEach((layer, i) => {
      const bias = biasOf(layerWindow(c, i));
      if (!recompute) {
        const out = this.decoderLayer(layer, x, pass, bias, i);
        layers.push(out.kv);
        x = out.x;
        return;
      }
      // Checkpointed (training: no keys/values kept): what the layer reads is saved for backward.
      const constants = [bias, ...rotaryTensors(pass)];
      const run = (h: tf.Tensor, [b, ...tables]: readonly tf.Tensor[]) =>
        this.decoderLayer(
          layer,
          h as tf.Tensor3D,
          withRotaryTensors(pass, tables),
          b as tf.Tensor4D,
          i,
        ).x;
      x = checkpoint(run, x, constants, layerVariables(layer)) as tf.Tensor3D;
    });
    return { x, layers };
  }

  /** One decoder layer: x [B, T, C] -> x + attention + MLP, and its keys/values. */
  private decoderLayer(
    layer: LlamaLayer,
    x: tf.Tensor3D,
    pass: LayerPass,
    bias: tf.Tensor4D,
    i: number,
  ): { x: tf.Tensor3D; kv: LayerKv } {
    const c = this.config;
    // Gemma 2 and 3: a norm of each branch's output before its residual add; Granite: a multiplier.
    const branch = (out: tf.Tensor, norm: tf.Variable<tf.Rank.R1> | null) => {
      const y = this.normed(out, norm);
      return c.residualMultiplier === 1 ? y : scaleBy(y, c.residualMultiplier);
    };
    const seed = (pass.seed * 1009 + i) * 8;
    const a = this.attention(layer, this.normed(x, layer.inputNorm), pass, bias, i, seed);
    // Adds, scales and reshapes that keep nothing for backward (core's shape-only ops).
    const mid = addSame(x, branch(a.y, layer.attnOutNorm));
    const h = this.normed(mid, layer.preMlpNorm);
    const lora = (k: number) => ({ training: dropping(pass), dropoutSeed: seed + k });
    // gate and up [B, T, F] each; Phi-3's gate_up_proj gives [B, T, 2F], chunked in two.
    const parts = layer.gateUpProj.map((p, j) => p.forward(h, lora(4 + j)));
    const [gate, up] = parts.length === 2 ? parts : tf.split(parts[0]!, 2, -1);
    const act = gated(c.mlpActivation, gate!, up!); // silu or gelu_tanh (Gemma) of gate, times up
    const out = addSame(mid, branch(layer.downProj.forward(act, lora(6)), layer.mlpOutNorm));
    return { x: out as tf.Tensor3D, kv: a.kv };
  }

  /** The rotary tables of positions [B, T] (Gemma 3: also its sliding layers'). */
  private rotations(positions: Int32Array, B: number, T: number) {
    const local = this.localInvFreq;
    // LongRoPE: a row past original_max_position_embeddings rotates with the long factors.
    const long = this.longInvFreq;
    const rowFrequencies = (b: number) => {
      const row = positions.subarray(b * T, (b + 1) * T);
      const length = row.reduce((a, p) => Math.max(a, p), 0) + 1;
      return long && longFactors(this.config, length) ? long : this.invFreq;
    };
    return {
      rotary: rotaryTables(
        long ? rowFrequencies : this.invFreq,
        positions,
        B,
        T,
        rotaryScale(this.config),
        this.config.rotaryInterleaved,
      ),
      localRotary: local === null ? null : rotaryTables(local, positions, B, T),
    };
  }

  /** x through a norm, or x itself where there is none (OLMo 2's branch inputs). */
  private normed(x: tf.Tensor, weight: tf.Variable<tf.Rank.R1> | null): tf.Tensor {
    return weight === null ? x : this.rmsNorm(x, weight);
  }

  /** RMSNorm over the last axis with this model's eps; Gemma's scales by 1 + weight. */
  private rmsNorm(x: tf.Tensor, weight: tf.Variable<tf.Rank.R1>): tf.Tensor {
    const { rmsNormEps: eps, normPlusOne } = this.config;
    if (!normPlusOne) return rmsNorm(x, weight, eps);
    if (!rmsNormFused(weight)) return tf.tidy(() => rmsNormComposed(x, tf.add(weight, 1), eps));
    return rmsNorm(x, this.normGamma(weight), eps); // frozen: 1 + weight made once
  }

  /**
   * What a norm multiplies by, for fused kernels and the hand-scheduled step:
   * the weight itself, or Gemma's 1 + weight, made once per (frozen) weight
   * since a fused op keeps its gamma for backward; it lives as long as the model.
   */
  normGamma(weight: tf.Variable<tf.Rank.R1>): tf.Tensor1D {
    if (!this.config.normPlusOne) return weight;
    let scale = this.onePlus.get(weight);
    if (!scale) {
      scale = tf.tidy(() => tf.keep(tf.add(weight, 1) as tf.Tensor1D));
      this.onePlus.set(weight, scale);
    }
    return scale;
  }

  /** Grouped-query attention; x [B, T, C] -> [B, T, C], and this layer's keys/values [B, Hkv, Tk, D]. */
  private attention(
    layer: LlamaLayer,
    x: tf.Tensor,
    pass: LayerPass,
    bias: tf.Tensor4D,
    index: number,
    seed: number,
  ): { y: tf.Tensor; kv: LayerKv } {
    const c = this.config;
    const [B, T] = x.shape as [number, number, number];
    const [H, Hkv, D] = [c.numHeads, c.numKvHeads, c.headDim];
    const lora = (k: number) => ({ training: dropping(pass), dropoutSeed: seed + k });
    // q/k norms: per head after the split, or (OLMo 2) over [B, T, n D] before it.
    const heads = (t: tf.Tensor, n: number, norm: tf.Variable<tf.Rank.R1> | null) => {
      const whole = norm && c.qkNorm === 'all' ? this.rmsNorm(t, norm) : t;
      const split = reshapeTo(whole, [B, T, n, D]); // [B, T, n, D]
      const normed = norm && c.qkNorm === 'head' ? this.rmsNorm(split, norm) : split;
      return normed.transpose([0, 2, 1, 3]) as tf.Tensor4D; // [B, n, T, D]
    };
    const window = layerWindow(c, index);
    // Gemma 3: sliding layers rotate by their own base.
    const sliding = c.slidingLayers?.[index] === true;
    const { cos, sin } = sliding && pass.localRotary ? pass.localRotary : pass.rotary;
    // SmolLM3's NoPE layers leave q and k unrotated.
    const rotate = (t: tf.Tensor4D) =>
      layerRotates(c, index) ? applyRotary(t, cos, sin, c.rotaryInterleaved) : t;
    // q [B, T, H D], k and v [B, T, Hkv D]; Phi-3's qkv_proj gives them side by side.
    const parts = layer.qkvProj.map((p, j) => p.forward(x, lora(j)));
    const [qx, kx, vx] =
      parts.length === 3 ? parts : tf.split(parts[0]!, [H * D, Hkv * D, Hkv * D], -1);
    const q = rotate(heads(qx!, H, layer.qNorm));
    const k = rotate(heads(kx!, Hkv, layer.kNorm));
    const v = heads(vx!, Hkv, null);
    const past = pass.past?.[index];
    const keys = past ? (tf.concat([past.keys, k], 2) as tf.Tensor4D) : k; // [B, Hkv, Tk, D]
    const values = past ? (tf.concat([past.values, v], 2) as tf.Tensor4D) : v;
    const p = c.attentionDropout;
    const options = {
      scale: attentionScale(c),
      mask: bias, // [B|1, 1, T, Tk]
      dropout: dropping(pass) && p > 0 ? { rate: p, seed: seed + 7 } : undefined,
      window, // the fused path's; the composed path reads it from the bias
      softcap: c.attnSoftcap, // Gemma 2
    };
    const [kH, vH] = [repeatKv(keys, H / Hkv), repeatKv(values, H / Hkv)]; // [B, H, T, D]
    const tokenMajor = (t: tf.Tensor) =>
      reshapeTo<tf.Rank.R3>(t.transpose([0, 2, 1, 3]), [B, T, H * D]); // [B, T, H D]
    const attend = pass.causal ? causalAttention : causalAttentionComposed;
    const y = pass.documents
      ? documentAttention(tokenMajor(q), tokenMajor(kH), tokenMajor(vH), H, pass.documents, options)
      : tokenMajor(attend(q, kH, vH, options));
    return { y: layer.oProj.forward(y, lora(3)), kv: { keys, values } };
  }
}
