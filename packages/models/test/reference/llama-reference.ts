// An independent float64 Llama-family model, written from Hugging Face
// transformers' modeling_llama.py / modeling_mistral.py / modeling_qwen2.py /
// modeling_qwen3.py / modeling_gemma.py / modeling_gemma2.py / modeling_gemma3.py /
// modular_granite.py / modular_smollm3.py / modeling_phi3.py / modular_olmo2.py /
// modular_glm.py / modular_glm4.py and
// modeling_rope_utils.py (eval mode), and PEFT's LoRA
// for nn.Linear, to check the tfjs models against. It reads the same files a
// Python user would (config.json, model.safetensors or its shards and index,
// adapter folders) and shares no code with src/llama/ on purpose: plain
// loops over Float64Arrays, one sequence at a time, slow but obvious.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensorsFile, toFloat32 } from '@lorafleet/core';
import type { ReferenceLoraModule, ReferenceTensor } from './gpt2-reference.js';

export interface ReferenceLlamaConfig {
  modelType: string;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  ropeTheta: number;
  ropeScaling: Record<string, unknown> | null;
  /** int(head_dim * partial_rotary_factor): the leading dims of a head that rotate (Phi-3). */
  rotaryDim: number;
  /** max_position_embeddings and Phi-3's original_max_position_embeddings (LongRoPE's attention factor). */
  maxPositions: number;
  originalMaxPositions: number;
  /** Phi3Attention's qkv_proj ([q | k | v] rows). */
  fusedQkv: boolean;
  /** Phi3MLP's gate_up_proj ([gate | up], chunk(2)): Phi-3's and GLM's. */
  fusedGateUp: boolean;
  /** GLM's apply_rotary_pos_emb: adjacent pairs (x0, x1) turn, cos and sin repeat_interleave'd. */
  ropePairs: boolean;
  /** Glm4DecoderLayer's norm names (post_self_attn_layernorm, post_attention_layernorm before the MLP, post_mlp_layernorm). */
  glm4Names: boolean;
  /** q/k/v bias and o bias, as each modeling file builds its nn.Linear layers. */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
  /** Olmo2Attention's q_norm / k_norm: over all heads at once (before the split), not per head. */
  qkNormAll: boolean;
  /** input_layernorm and the norm before the MLP (Olmo2DecoderLayer has neither). */
  preNorm: boolean;
  tied: boolean;
  slidingWindow: number | null;
  /** GemmaRMSNorm (x * (1 + w)), GemmaModel's embeddings * sqrt(hidden) and GemmaMLP's gelu_pytorch_tanh. */
  gemma: boolean;
  /** Gemma3DecoderLayer: post_attention_layernorm on the attention output, pre/post_feedforward_layernorm around the MLP. */
  sandwich: boolean;
  /** Gemma3Attention's scaling: query_pre_attn_scalar^-0.5 (null: head_dim^-0.5). */
  queryScalar: number | null;
  /** Gemma 3's layer_types: which layers use the sliding window (null: all, when there is one). */
  slidingLayers: boolean[] | null;
  /** Gemma 3's rope_local_base_freq: the sliding layers' theta, unscaled. */
  localTheta: number | null;
  /** Gemma 2's attn_logit_softcapping and final_logit_softcapping: cap tanh(x / cap); null: none. */
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /**
   * GraniteConfig's embedding_multiplier (inputs_embeds times it),
   * attention_multiplier (GraniteAttention's scaling; null: not Granite),
   * residual_multiplier (residual + hidden_states times it) and logits_scaling
   * (logits divided by it); 1 elsewhere.
   */
  embeddingMultiplier: number;
  /** SmolLM3Config's no_rope_layers: 1 rotates q and k, 0 does not (null: every layer rotates). */
  ropeLayers: boolean[] | null;
  attentionMultiplier: number | null;
  residualMultiplier: number;
  logitsScaling: number;
}

export interface ReferenceLlama {
  config: ReferenceLlamaConfig;
  tensors: Map<string, ReferenceTensor>;
}

const IGNORE_INDEX = -100;

function configFromJson(j: Record<string, unknown>): ReferenceLlamaConfig {
  const type = j.model_type as string;
  const n = (k: string, fallback?: number): number => {
    const v = j[k] ?? fallback;
    if (typeof v !== 'number') throw new Error(`reference: config.json ${k} is ${String(v)}`);
    return v;
  };
  const heads = n('num_attention_heads');
  const hidden = n('hidden_size');
  const attentionBias = j.attention_bias === true;
  const gemma3 = type === 'gemma3_text';
  const gemma2 = type === 'gemma2';
  const gemma = type === 'gemma' || gemma2 || gemma3;
  const granite = type === 'granite';
  const smol = type === 'smollm3';
  const phi3 = type === 'phi3';
  const glm = type === 'glm' || type === 'glm4';
  // OLMo 3: OLMo 2's layer; 3 of every 4 layers slide, rotating with rope_theta unscaled.
  const olmo3 = type === 'olmo3';
  const olmo2 = type === 'olmo2' || olmo3;
  // EXAONE 4 (modular_exaone4.py): OLMo 2's decoder layer, per-head q/k norms, no biases; 3 of
  // every 4 layers slide, and the full ones attend without the rotary embedding.
  const exaone4 = type === 'exaone4';
  const exaoneWindow = exaone4 && j.sliding_window !== null;
  const multiplier = (k: string) => (granite ? n(k, 1) : 1);
  // Gemma2Config's defaults: 50 and 30 (null turns them off).
  const cap = (k: string, fallback: number) =>
    !gemma2 ? null : j[k] === undefined ? fallback : (j[k] as number | null);
  const layers = n('num_hidden_layers');
  type Json = Record<string, unknown>;
  const raw = ((j.rope_scaling ?? j.rope_parameters) as Json | undefined) ?? null;
  // Gemma 3 under v5: one rope object per layer type.
  const rope = raw && 'full_attention' in raw ? (raw.full_attention as Json) : raw;
  const localRope = raw && 'sliding_attention' in raw ? (raw.sliding_attention as Json) : null;
  const headDim =
    typeof j.head_dim === 'number' ? j.head_dim : gemma ? 256 : glm ? 128 : hidden / heads;
  // GlmConfig: partial_rotary_factor 0.5 when absent.
  const partial = (rope?.partial_rotary_factor ??
    j.partial_rotary_factor ??
    (glm ? 0.5 : 1)) as number;
  const slidingLayers =
    !gemma3 && !gemma2 && !olmo3 && !exaoneWindow
      ? null
      : Array.isArray(j.layer_types)
        ? (j.layer_types as string[]).map((t) => t === 'sliding_attention')
        : Array.from(
            { length: layers },
            (_, i) => (i + 1) % (gemma3 ? 6 : olmo3 || exaone4 ? 4 : 2) !== 0,
          );
  return {
    modelType: type,
    vocabSize: n('vocab_size'),
    hidden,
    layers,
    heads,
    // GemmaConfig's defaults: 16 key/value heads of 256 (Gemma3TextConfig: 4).
    // SmolLM3Config's: 4.
    kvHeads: n('num_key_value_heads', gemma3 || gemma2 || smol ? 4 : gemma ? 16 : glm ? 2 : heads),
    headDim,
    rotaryDim: Math.trunc(headDim * partial),
    maxPositions: n('max_position_embeddings', 4096),
    originalMaxPositions: n(
      'original_max_position_embeddings',
      (rope?.original_max_position_embeddings as number | undefined) ?? 4096,
    ),
    fusedQkv: phi3,
    fusedGateUp: phi3 || glm,
    ropePairs: glm,
    glm4Names: type === 'glm4',
    eps: n('rms_norm_eps', phi3 || olmo2 || exaone4 ? 1e-5 : glm ? 1.5625e-7 : 1e-6),
    // transformers v5: rope_parameters, replaced by a legacy rope_scaling; rope_theta fills in.
    ropeTheta:
      typeof rope?.rope_theta === 'number'
        ? rope.rope_theta
        : n('rope_theta', gemma3 ? 1e6 : smol ? 2e6 : olmo3 ? 500000 : 10000),
    ropeScaling: rope,
    // GlmConfig: attention_bias true when absent (q/k/v only; GlmAttention's o_proj has none).
    qkvBias:
      type === 'qwen2' ||
      (type !== 'mistral' &&
        !exaone4 &&
        (attentionBias || (glm && j.attention_bias === undefined))),
    oBias: (type === 'llama' || type === 'qwen3' || gemma) && attentionBias,
    mlpBias: (type === 'llama' || granite || smol) && j.mlp_bias === true,
    qkNorm: type === 'qwen3' || gemma3 || olmo2 || exaone4,
    qkNormAll: olmo2,
    preNorm: !olmo2 && !exaone4,
    tied:
      j.tie_word_embeddings === true || ((gemma || smol) && j.tie_word_embeddings === undefined),
    // MistralConfig's and Gemma3TextConfig's default window is 4096; null turns it off.
    // Phi3Config's window is null unless stated.
    slidingWindow: phi3
      ? ((j.sliding_window as number | null | undefined) ?? null)
      : type !== 'mistral' && !gemma3 && !gemma2 && !olmo3 && !exaone4
        ? null
        : j.sliding_window === undefined
          ? 4096
          : (j.sliding_window as number | null),
    gemma,
    sandwich: gemma3 || gemma2 || olmo2 || exaone4 || type === 'glm4',
    queryScalar: gemma3 || gemma2 ? n('query_pre_attn_scalar', 256) : null,
    slidingLayers,
    embeddingMultiplier: multiplier('embedding_multiplier'),
    ropeLayers: exaoneWindow
      ? slidingLayers
      : type !== 'smollm3'
        ? null
        : Array.isArray(j.no_rope_layers)
          ? (j.no_rope_layers as number[]).slice(0, layers).map((v) => v === 1)
          : Array.from(
              { length: layers },
              (_, i) => (i + 1) % n('no_rope_layer_interval', 4) !== 0,
            ),
    attentionMultiplier: granite ? n('attention_multiplier', 1) : null,
    residualMultiplier: multiplier('residual_multiplier'),
    logitsScaling: multiplier('logits_scaling'),
    attnSoftcap: cap('attn_logit_softcapping', 50),
    finalSoftcap: cap('final_logit_softcapping', 30),
    localTheta:
      !gemma3 && !olmo3
        ? null
        : typeof localRope?.rope_theta === 'number'
          ? localRope.rope_theta
          : olmo3
            ? n('rope_theta', 500000)
            : n('rope_local_base_freq', 10000),
  };
}

async function readTensors(dir: string): Promise<Map<string, ReferenceTensor>> {
  let files = ['model.safetensors'];
  try {
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    files = [...new Set(Object.values(index.weight_map as Record<string, string>))];
  } catch {
    // No index: one file.
  }
  const tensors = new Map<string, ReferenceTensor>();
  for (const f of files) {
    const path = join(dir, f);
    for (const [name, entry] of (await readSafetensorsFile(path)).tensors) {
      tensors.set(name, {
        shape: [...entry.shape],
        data: Float64Array.from(toFloat32(entry, name, path)),
      });
    }
  }
  return tensors;
}

export async function loadReferenceLlama(dir: string): Promise<ReferenceLlama> {
  const json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  return { config: configFromJson(json), tensors: await readTensors(dir) };
}

export function withLlamaConfig(
  model: ReferenceLlama,
  patch: Partial<ReferenceLlamaConfig>,
): ReferenceLlama {
  return { config: { ...model.config, ...patch }, tensors: model.tensors };
}

/** Every adapted nn.Linear weight W [out, in] replaced by W + scaling * B A (PEFT, fan_in_fan_out=False). */
export function withLlamaLora(
  model: ReferenceLlama,
  modules: Map<string, ReferenceLoraModule>,
): ReferenceLlama {
  const tensors = new Map(model.tensors);
  for (const [path, { a, b, scaling }] of modules) {
    const w = tensors.get(`${path}.weight`);
    if (!w) throw new Error(`reference: adapter module ${path} has no weight`);
    const [nOut, nIn] = w.shape as [number, number];
    const r = a.shape[0]!;
    const data = Float64Array.from(w.data);
    for (let o = 0; o < nOut; o++)
      for (let i = 0; i < nIn; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += b.data[o * r + k]! * a.data[k * nIn + i]!;
        data[o * nIn + i]! += scaling * s;
      }
    tensors.set(`${path}.weight`, { shape: w.shape, data });
  }
  return { config: model.config, tensors };
}

function get(m: ReferenceLlama, name: string): Float64Array {
  const t = m.tensors.get(name);
  if (!t) throw new Error(`reference: tensor ${name} is missing`);
  return t.data;
}

/** nn.Linear: x [T, in] -> x W^T + b, W [out, in]. */
function linear(m: ReferenceLlama, name: string, x: Float64Array, T: number, bias: boolean) {
  const t = m.tensors.get(`${name}.weight`)!;
  const [nOut, nIn] = t.shape as [number, number];
  const b = bias ? get(m, `${name}.bias`) : null;
  const y = new Float64Array(T * nOut);
  for (let r = 0; r < T; r++)
    for (let o = 0; o < nOut; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < nIn; i++) s += x[r * nIn + i]! * t.data[o * nIn + i]!;
      y[r * nOut + o] = s;
    }
  return y;
}

/** LlamaRMSNorm over rows of width n; GemmaRMSNorm (times 1 + w) with `plusOne`. */
function rms(x: Float64Array, w: Float64Array, n: number, eps: number, plusOne = false) {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = (plusOne ? 1 + w[i]! : w[i]!) * x[r * n + i]! * inv;
  }
  return y;
}

/**
 * modeling_rope_utils: default, linear, llama3, yarn and longrope inverse
 * frequencies, for a forward pass of `seqLen` positions (0 .. seqLen - 1).
 */
export function referenceInvFreq(c: ReferenceLlamaConfig, seqLen = 0): number[] {
  const D = c.rotaryDim;
  const base: number[] = [];
  for (let i = 0; i < D; i += 2) base.push(1 / c.ropeTheta ** (i / D));
  const s = c.ropeScaling;
  const type = s ? (s.rope_type ?? s.type) : 'default';
  if (!s || type === 'default') return base;
  if (type === 'longrope') {
    // _compute_longrope_parameters(config, device, seq_len): long_factor when seq_len (the
    // rotary embedding's max(position_ids) + 1) is past original_max_position_embeddings.
    const ext = (seqLen > c.originalMaxPositions ? s.long_factor : s.short_factor) as number[];
    return base.map((f, i) => f / ext[i]!);
  }
  if (type === 'yarn') return referenceYarn(c, base);
  const factor = s.factor as number;
  if (type === 'linear') return base.map((f) => f / factor);
  if (type !== 'llama3') throw new Error(`reference: rope type ${String(type)}`);
  const old = s.original_max_position_embeddings as number;
  const [low, high] = [s.low_freq_factor as number, s.high_freq_factor as number];
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    const scaled = wavelen > old / low ? f / factor : f;
    const smooth = (old / wavelen - low) / (high - low);
    const medium = !(wavelen < old / high) && !(wavelen > old / low);
    return medium ? (1 - smooth) * (scaled / factor) + smooth * scaled : scaled;
  });
}

/** _compute_yarn_parameters (transformers v5): the ramp between extrapolated and interpolated frequencies. */
function referenceYarn(c: ReferenceLlamaConfig, base: number[]): number[] {
  const s = c.ropeScaling!;
  const original = (s.original_max_position_embeddings as number | undefined) ?? c.maxPositions;
  const factor = (s.factor as number | undefined) ?? c.maxPositions / original;
  const dim = c.rotaryDim;
  const correction = (rotations: number) =>
    (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(c.ropeTheta));
  const truncate = s.truncate !== false;
  let low = correction((s.beta_fast as number) || 32);
  let high = correction((s.beta_slow as number) || 1);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  return base.map((extrapolated, i) => {
    const interpolated = extrapolated / factor;
    const extrapolationFactor = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
    return interpolated * (1 - extrapolationFactor) + extrapolated * extrapolationFactor;
  });
}

/** LongRoPE's and YaRN's attention_factor, by which cos and sin are multiplied (1 for every other type). */
export function referenceRopeScale(c: ReferenceLlamaConfig): number {
  const s = c.ropeScaling;
  const type = s ? (s.rope_type ?? s.type) : 'default';
  if (!s || (type !== 'longrope' && type !== 'yarn')) return 1;
  if (typeof s.attention_factor === 'number') return s.attention_factor;
  if (type === 'yarn') {
    const original = (s.original_max_position_embeddings as number | undefined) ?? c.maxPositions;
    const factor = (s.factor as number | undefined) ?? c.maxPositions / original;
    const mscale = (m: number) => (factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1);
    const [m, all] = [s.mscale as number | undefined, s.mscale_all_dim as number | undefined];
    return m && all ? mscale(m) / mscale(all) : mscale(1);
  }
  const factor = typeof s.factor === 'number' ? s.factor : c.maxPositions / c.originalMaxPositions;
  return factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(c.originalMaxPositions));
}

/**
 * In place: the first 2 inv.length dims of each head of width D at position t
 * rotated, frequency i turning dims (i, i + half), or with `pairs` (GLM) (2i, 2i + 1).
 */
function rope(
  x: Float64Array,
  T: number,
  nHeads: number,
  D: number,
  inv: number[],
  scale: number,
  pairs = false,
) {
  const half = inv.length;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < nHeads; h++) {
      const o = (t * nHeads + h) * D;
      for (let i = 0; i < half; i++) {
        const [cos, sin] = [Math.cos(t * inv[i]!) * scale, Math.sin(t * inv[i]!) * scale];
        const [a, b] = pairs ? [o + 2 * i, o + 2 * i + 1] : [o + i, o + half + i];
        const [x1, x2] = [x[a]!, x[b]!];
        x[a] = x1 * cos - x2 * sin;
        x[b] = x2 * cos + x1 * sin;
      }
    }
}

/** Causal (windowed) grouped-query attention of one sequence: [T, H D]. */
function attention(
  c: ReferenceLlamaConfig,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  T: number,
  window: number | null,
) {
  const { heads: H, kvHeads: Hkv, headDim: D } = c;
  const scale = c.attentionMultiplier ?? 1 / Math.sqrt(c.queryScalar ?? D);
  const out = new Float64Array(T * H * D);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / Hkv));
    for (let t = 0; t < T; t++) {
      const scores: number[] = [];
      for (let s = 0; s <= t; s++) {
        if (window !== null && t - s >= window) {
          scores.push(-Infinity);
          continue;
        }
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(t * H + h) * D + d]! * k[(s * Hkv + g) * D + d]!;
        const s0 = dot * scale;
        scores.push(c.attnSoftcap === null ? s0 : c.attnSoftcap * Math.tanh(s0 / c.attnSoftcap));
      }
      const max = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - max));
      const z = e.reduce((a, b) => a + b, 0);
      for (let s = 0; s <= t; s++)
        for (let d = 0; d < D; d++)
          out[(t * H + h) * D + d]! += (e[s]! / z) * v[(s * Hkv + g) * D + d]!;
    }
  }
  return out;
}

/** Rows [T, sum(widths)] cut into column blocks [T, width] (qkv[..., :q], ...; chunk(2, dim=-1)). */
function chunks(y: Float64Array, T: number, widths: number[]): Float64Array[] {
  const W = widths.reduce((a, b) => a + b, 0);
  let first = 0;
  return widths.map((w) => {
    const out = new Float64Array(T * w);
    for (let t = 0; t < T; t++) out.set(y.subarray(t * W + first, t * W + first + w), t * w);
    first += w;
    return out;
  });
}

/** gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))). */
function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Logits [T, V] of one sequence. */
export function referenceLlamaLogits(m: ReferenceLlama, ids: readonly number[]): Float64Array {
  const c = m.config;
  const [T, C] = [ids.length, c.hidden];
  const embed = get(m, 'model.embed_tokens.weight');
  let x: Float64Array = new Float64Array(T * C);
  ids.forEach((id, t) => x.set(embed.subarray(id * C, (id + 1) * C), t * C));
  // GemmaModel: normalizer = torch.tensor(hidden_size ** 0.5, dtype=float32).
  if (c.gemma) x = x.map((xi) => xi * Math.fround(Math.sqrt(C)));
  x = x.map((xi) => xi * c.embeddingMultiplier); // GraniteModel
  const norm = (y: Float64Array, w: string, n: number) => rms(y, get(m, w), n, c.eps, c.gemma);
  const inv = referenceInvFreq(c, T);
  // Gemma3TextModel's rotary_emb_local: rope_local_base_freq, default rope type.
  const localInv =
    c.localTheta === null
      ? inv
      : referenceInvFreq({ ...c, ropeTheta: c.localTheta, ropeScaling: null });
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    const sliding = c.slidingLayers === null ? c.slidingWindow !== null : c.slidingLayers[l]!;
    const window = sliding ? c.slidingWindow : null;
    const layerInv = c.slidingLayers !== null && sliding ? localInv : inv;
    const h = c.preNorm ? norm(x, `${p}.input_layernorm.weight`, C) : x;
    const [qw, kvw] = [c.heads * c.headDim, c.kvHeads * c.headDim];
    const qkv = c.fusedQkv
      ? chunks(linear(m, `${p}.self_attn.qkv_proj`, h, T, false), T, [qw, kvw, kvw])
      : ['q_proj', 'k_proj', 'v_proj'].map((n) =>
          linear(m, `${p}.self_attn.${n}`, h, T, c.qkvBias),
        );
    let [q, k] = [qkv[0]!, qkv[1]!];
    const v = qkv[2]!;
    if (c.qkNorm) {
      q = norm(q, `${p}.self_attn.q_norm.weight`, c.qkNormAll ? qw : c.headDim);
      k = norm(k, `${p}.self_attn.k_norm.weight`, c.qkNormAll ? kvw : c.headDim);
    }
    if (c.ropeLayers === null || c.ropeLayers[l]) {
      const scale = layerInv === inv ? referenceRopeScale(c) : 1;
      rope(q, T, c.heads, c.headDim, layerInv, scale, c.ropePairs);
      rope(k, T, c.kvHeads, c.headDim, layerInv, scale, c.ropePairs);
    }
    let o = linear(m, `${p}.self_attn.o_proj`, attention(c, q, k, v, T, window), T, c.oBias);
    const [attnOut, mlpOut] = c.glm4Names
      ? ['post_self_attn_layernorm', 'post_mlp_layernorm']
      : ['post_attention_layernorm', 'post_feedforward_layernorm'];
    if (c.sandwich) o = norm(o, `${p}.${attnOut}.weight`, C);
    x = x.map((xi, i) => xi + o[i]! * c.residualMultiplier);
    const preMlp =
      c.sandwich && !c.glm4Names ? 'pre_feedforward_layernorm' : 'post_attention_layernorm';
    const h2 = c.preNorm ? norm(x, `${p}.${preMlp}.weight`, C) : x;
    const F = (m.tensors.get(`${p}.mlp.down_proj.weight`)!.shape as number[])[1]!;
    const [gate, up] = c.fusedGateUp
      ? chunks(linear(m, `${p}.mlp.gate_up_proj`, h2, T, false), T, [F, F])
      : ['gate_proj', 'up_proj'].map((n) => linear(m, `${p}.mlp.${n}`, h2, T, c.mlpBias));
    const act = gate!.map((g, i) => (c.gemma ? geluTanh(g) : g / (1 + Math.exp(-g))) * up![i]!);
    let down = linear(m, `${p}.mlp.down_proj`, act, T, c.mlpBias);
    if (c.sandwich) down = norm(down, `${p}.${mlpOut}.weight`, C);
    x = x.map((xi, i) => xi + down[i]! * c.residualMultiplier);
  }
  const hFinal = norm(x, 'model.norm.weight', C);
  const head = c.tied ? embed : get(m, 'lm_head.weight');
  const V = c.vocabSize;
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++)
    for (let w = 0; w < V; w++) {
      let s = 0;
      for (let i = 0; i < C; i++) s += hFinal[t * C + i]! * head[w * C + i]!;
      s /= c.logitsScaling; // GraniteForCausalLM
      const cap = c.finalSoftcap;
      logits[t * V + w] = cap === null ? s : cap * Math.tanh(s / cap);
    }
  return logits;
}

/** Mean shifted cross-entropy over labelled tokens (labels -100 ignored), as LlamaForCausalLM's loss. */
export function referenceLlamaLoss(
  m: ReferenceLlama,
  ids: readonly (readonly number[])[],
  labels: readonly (readonly number[])[],
): { loss: number; tokens: number } {
  const V = m.config.vocabSize;
  let sum = 0;
  let tokens = 0;
  ids.forEach((row, b) => {
    const logits = referenceLlamaLogits(m, row);
    for (let t = 0; t + 1 < row.length; t++) {
      const label = labels[b]![t + 1]!;
      if (label === IGNORE_INDEX) continue;
      const z = logits.subarray(t * V, (t + 1) * V);
      const max = Math.max(...z);
      const lse = max + Math.log(z.reduce((a, x) => a + Math.exp(x - max), 0));
      sum += lse - z[label]!;
      tokens++;
    }
  });
  return { loss: sum / tokens, tokens };
}
