// An independent float64 GPT-2, written from Hugging Face transformers'
// modeling_gpt2.py (GPT2LMHeadModel in eval mode) and PEFT's LoRA for Conv1D,
// to check the tfjs model against. It reads the same files a Python user
// would (config.json, model.safetensors, adapter_config.json,
// adapter_model.safetensors) and shares no code with src/gpt2/ on purpose:
// plain loops over Float64Arrays, slow but obvious.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensorsFile, toFloat32 } from '@lorafleet/core';

/** The config.json fields that change GPT2LMHeadModel's eval-mode output. */
export interface ReferenceConfig {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** MLP width (config.n_inner, or 4 * n_embd when it is null). */
  nInner: number;
  layerNormEpsilon: number;
}

export interface ReferenceTensor {
  shape: number[];
  data: Float64Array;
}

/** Tensors keyed by GPT2LMHeadModel's names ("transformer.h.0.attn.c_attn.weight"). */
export interface ReferenceGpt2 {
  config: ReferenceConfig;
  tensors: Map<string, ReferenceTensor>;
}

/** One PEFT module: A [r, in], B [out, r], row-major, and its scaling. */
export interface ReferenceLoraModule {
  a: ReferenceTensor;
  b: ReferenceTensor;
  scaling: number;
}

const PREFIX = 'transformer.';
const IGNORE_INDEX = -100;

function configFromJson(json: Record<string, unknown>): ReferenceConfig {
  const num = (key: string): number => {
    const v = json[key];
    if (typeof v !== 'number') throw new Error(`reference: config.json ${key} is ${String(v)}`);
    return v;
  };
  const nEmbd = num('n_embd');
  const nInner = json.n_inner === null || json.n_inner === undefined ? 4 * nEmbd : num('n_inner');
  return {
    vocabSize: num('vocab_size'),
    nPositions: num('n_positions'),
    nEmbd,
    nLayer: num('n_layer'),
    nHead: num('n_head'),
    nInner,
    layerNormEpsilon: typeof json.layer_norm_epsilon === 'number' ? json.layer_norm_epsilon : 1e-5,
  };
}

async function readTensors(path: string): Promise<Map<string, ReferenceTensor>> {
  const file = await readSafetensorsFile(path);
  const tensors = new Map<string, ReferenceTensor>();
  for (const [name, entry] of file.tensors) {
    tensors.set(name, {
      shape: [...entry.shape],
      data: Float64Array.from(toFloat32(entry, name, path)),
    });
  }
  return tensors;
}

/** Reads a Hugging Face GPT-2 folder; names may or may not carry "transformer.". */
export async function loadReferenceGpt2(dir: string): Promise<ReferenceGpt2> {
  const json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const raw = await readTensors(join(dir, 'model.safetensors'));
  const tensors = new Map<string, ReferenceTensor>();
  for (const [name, t] of raw) tensors.set(name.startsWith(PREFIX) ? name : PREFIX + name, t);
  return { config: configFromJson(json), tensors };
}

/** The same weights under a changed config (to show a test case can tell them apart). */
export function withConfig(model: ReferenceGpt2, patch: Partial<ReferenceConfig>): ReferenceGpt2 {
  return { config: { ...model.config, ...patch }, tensors: model.tensors };
}

function param(model: ReferenceGpt2, name: string, shape: number[]): Float64Array {
  const t = model.tensors.get(PREFIX + name);
  if (!t) throw new Error(`reference: tensor ${PREFIX}${name} is missing`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`reference: ${PREFIX}${name} is [${t.shape}], expected [${shape}]`);
  }
  return t.data;
}

/**
 * Reads a PEFT adapter folder. Scaling is lora_alpha / r, or lora_alpha / sqrt(r)
 * with use_rslora. Keys are "base_model.model.<module>.lora_{A,B}.weight".
 */
export async function loadReferenceAdapter(dir: string): Promise<Map<string, ReferenceLoraModule>> {
  const json = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const r = json.r as number;
  const alpha = json.lora_alpha as number;
  const patterns = [json.rank_pattern, json.alpha_pattern];
  if (patterns.some((p) => p !== undefined && Object.keys(p as object).length > 0)) {
    throw new Error('reference: rank_pattern / alpha_pattern are not modelled');
  }
  const scaling = json.use_rslora === true ? alpha / Math.sqrt(r) : alpha / r;
  const tensors = await readTensors(join(dir, 'adapter_model.safetensors'));
  const halves = new Map<string, { a?: ReferenceTensor; b?: ReferenceTensor }>();
  for (const [key, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(key);
    if (!m) throw new Error(`reference: unexpected adapter tensor ${key}`);
    const [, path, which] = m as unknown as [string, string, 'A' | 'B'];
    const pair = halves.get(path) ?? {};
    pair[which === 'A' ? 'a' : 'b'] = t;
    halves.set(path, pair);
  }
  const modules = new Map<string, ReferenceLoraModule>();
  for (const [path, { a, b }] of halves) {
    if (!a || !b) throw new Error(`reference: ${path} lacks lora_A or lora_B`);
    if (a.shape[0] !== r || b.shape[1] !== r) {
      throw new Error(`reference: ${path} has A [${a.shape}], B [${b.shape}], r = ${r}`);
    }
    modules.set(path, { a, b, scaling });
  }
  return modules;
}

/**
 * The base model with every adapted Conv1D weight W [in, out] replaced by
 * W + scaling * (B A)^T, which is what PEFT computes (fan_in_fan_out=True).
 */
export function withLora(
  model: ReferenceGpt2,
  modules: Map<string, ReferenceLoraModule>,
): ReferenceGpt2 {
  const tensors = new Map(model.tensors);
  for (const [path, { a, b, scaling }] of modules) {
    const key = path.startsWith(PREFIX) ? `${path}.weight` : `${PREFIX}${path}.weight`;
    const w = tensors.get(key);
    if (!w) throw new Error(`reference: adapter module ${path} has no weight ${key}`);
    const [nIn, nOut] = w.shape as [number, number];
    const r = a.shape[0]!;
    if (a.shape[1] !== nIn || b.shape[0] !== nOut) {
      throw new Error(`reference: ${path} A [${a.shape}], B [${b.shape}] vs W [${w.shape}]`);
    }
    const data = Float64Array.from(w.data);
    for (let i = 0; i < nIn; i++) {
      for (let o = 0; o < nOut; o++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += b.data[o * r + k]! * a.data[k * nIn + i]!;
        data[i * nOut + o]! += scaling * s;
      }
    }
    tensors.set(key, { shape: w.shape, data });
  }
  return { config: model.config, tensors };
}

/** x [T, C] -> LayerNorm with biased variance. */
function layerNorm(
  x: Float64Array,
  T: number,
  C: number,
  gain: Float64Array,
  bias: Float64Array,
  eps: number,
): Float64Array {
  const out = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[t * C + c]!;
    mean /= C;
    let variance = 0;
    for (let c = 0; c < C; c++) variance += (x[t * C + c]! - mean) ** 2;
    variance /= C;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) {
      out[t * C + c] = (x[t * C + c]! - mean) * inv * gain[c]! + bias[c]!;
    }
  }
  return out;
}

/** Conv1D: x [T, nIn] @ W [nIn, nOut] + b [nOut]. */
function conv1d(
  x: Float64Array,
  T: number,
  nIn: number,
  nOut: number,
  w: Float64Array,
  b: Float64Array,
): Float64Array {
  const out = new Float64Array(T * nOut);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < nOut; o++) {
      let s = b[o]!;
      for (let i = 0; i < nIn; i++) s += x[t * nIn + i]! * w[i * nOut + o]!;
      out[t * nOut + o] = s;
    }
  }
  return out;
}

function geluNew(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Causal self-attention on qkv [T, 3C] (q | k | v along the last axis) -> [T, C]. */
function attention(qkv: Float64Array, T: number, C: number, nHead: number): Float64Array {
  const D = C / nHead;
  const out = new Float64Array(T * C);
  const scores = new Float64Array(T);
  const at = (t: number, part: number, h: number, d: number) =>
    qkv[t * 3 * C + part * C + h * D + d]!;
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < T; i++) {
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += at(i, 0, h, d) * at(j, 1, h, d);
        scores[j] = s / Math.sqrt(D);
        max = Math.max(max, scores[j]!);
      }
      let z = 0;
      for (let j = 0; j <= i; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        z += scores[j]!;
      }
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let j = 0; j <= i; j++) s += scores[j]! * at(j, 2, h, d);
        out[i * C + h * D + d] = s / z;
      }
    }
  }
  return out;
}

/** GPT2LMHeadModel(input_ids).logits for one sequence: [T, V], row-major. */
export function referenceLogits(model: ReferenceGpt2, ids: readonly number[]): Float64Array {
  const { vocabSize: V, nPositions: P, nEmbd: C, nLayer, nHead, nInner: I } = model.config;
  const eps = model.config.layerNormEpsilon;
  const T = ids.length;
  if (T > P) throw new Error(`reference: ${T} tokens exceed n_positions ${P}`);
  const wte = param(model, 'wte.weight', [V, C]);
  const wpe = param(model, 'wpe.weight', [P, C]);
  let h = new Float64Array(T * C); // [T, C]
  for (let t = 0; t < T; t++) {
    const id = ids[t]!;
    if (!(id >= 0 && id < V)) throw new Error(`reference: token ${id} outside the vocabulary`);
    for (let c = 0; c < C; c++) h[t * C + c] = wte[id * C + c]! + wpe[t * C + c]!;
  }
  for (let l = 0; l < nLayer; l++) {
    const p = (name: string, shape: number[]) => param(model, `h.${l}.${name}`, shape);
    const a = layerNorm(h, T, C, p('ln_1.weight', [C]), p('ln_1.bias', [C]), eps);
    const qkv = conv1d(
      a,
      T,
      C,
      3 * C,
      p('attn.c_attn.weight', [C, 3 * C]),
      p('attn.c_attn.bias', [3 * C]),
    );
    const merged = attention(qkv, T, C, nHead); // [T, C]
    const attnOut = conv1d(
      merged,
      T,
      C,
      C,
      p('attn.c_proj.weight', [C, C]),
      p('attn.c_proj.bias', [C]),
    );
    h = h.map((v, i) => v + attnOut[i]!);
    const m = layerNorm(h, T, C, p('ln_2.weight', [C]), p('ln_2.bias', [C]), eps);
    const fc = conv1d(m, T, C, I, p('mlp.c_fc.weight', [C, I]), p('mlp.c_fc.bias', [I])).map(
      geluNew,
    );
    const mlpOut = conv1d(fc, T, I, C, p('mlp.c_proj.weight', [I, C]), p('mlp.c_proj.bias', [C]));
    h = h.map((v, i) => v + mlpOut[i]!);
  }
  const hf = layerNorm(
    h,
    T,
    C,
    param(model, 'ln_f.weight', [C]),
    param(model, 'ln_f.bias', [C]),
    eps,
  );
  const logits = new Float64Array(T * V); // tied head: h @ wte^T
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += hf[t * C + c]! * wte[v * C + c]!;
      logits[t * V + v] = s;
    }
  }
  return logits;
}

/**
 * Hugging Face's causal-LM loss over a batch: logits at t predict labels[t + 1];
 * labels of -100 are skipped; the mean over every counted position of the batch.
 */
export function referenceMeanLoss(
  model: ReferenceGpt2,
  ids: readonly (readonly number[])[],
  labels: readonly (readonly number[])[],
): { loss: number; tokens: number } {
  const V = model.config.vocabSize;
  let sum = 0;
  let tokens = 0;
  ids.forEach((row, b) => {
    const logits = referenceLogits(model, row);
    for (let t = 0; t + 1 < row.length; t++) {
      const label = labels[b]![t + 1]!;
      if (label === IGNORE_INDEX) continue;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[t * V + v]! - max);
      sum += max + Math.log(z) - logits[t * V + label]!;
      tokens++;
    }
  });
  return { loss: sum / tokens, tokens };
}
