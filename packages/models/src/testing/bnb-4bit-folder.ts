// Tests' stand-in for transformers' save_pretrained of a model loaded with
// BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"): a
// Llama-family folder whose linear layers are written tensor by tensor as
// bitsandbytes' QuantState.as_dict(packed=True) lays them out, with or
// without double quantization (then its absmax as quantize_blockwise(absmax
// - mean, blocksize=256) stores it, over a 256-value code the file carries).
// bitsandbytes is not installed anywhere this project runs, so this is the
// layout as its source states it, not a file it wrote.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  NF4_BLOCK,
  NF4_CODE,
  type TensorEntry,
  dequantizeNf4Into,
  float32Entry,
  quantizeNf4,
  writeSafetensorsFile,
} from '@lorafleet/core';
import type { WeightMap } from '../causal-lm.js';
import { modelConfigFromJson, modelLinearModules } from '../families.js';

export const BNB_4BIT_QUANTIZATION = {
  quant_method: 'bitsandbytes',
  load_in_4bit: true,
  bnb_4bit_quant_type: 'nf4',
  bnb_4bit_compute_dtype: 'bfloat16',
  bnb_4bit_quant_storage: 'uint8',
  llm_int8_skip_modules: null,
};

/** A sorted 256-value code for a doubly quantized absmax (the file carries its own). */
const NESTED_CODE = Float32Array.from({ length: 256 }, (_, i) => -1 + (2 * i) / 255);
const NESTED_BLOCK = 256;

const u8 = (bytes: Uint8Array, shape: number[]): TensorEntry => ({ dtype: 'U8', shape, bytes });
const jsonBytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

function nearest(code: Float32Array, x: number): number {
  let best = 0;
  for (let k = 1; k < code.length; k++)
    if (Math.abs(x - code[k]!) < Math.abs(x - code[best]!)) best = k;
  return best;
}

/** absmax as quantize_blockwise(absmax - offset, 256) stores it, and the f32 it decodes to. */
function doublyQuantized(absmax: Float32Array) {
  const offset = Math.fround(absmax.reduce((a, b) => a + b, 0) / absmax.length);
  const blocks = Math.ceil(absmax.length / NESTED_BLOCK);
  const scale = new Float32Array(blocks);
  const q = new Uint8Array(absmax.length);
  for (let b = 0; b < blocks; b++) {
    const part = absmax.subarray(b * NESTED_BLOCK, (b + 1) * NESTED_BLOCK);
    scale[b] = part.reduce((m, v) => Math.max(m, Math.abs(v - offset)), 0);
    part.forEach(
      (v, j) => (q[b * NESTED_BLOCK + j] = nearest(NESTED_CODE, (v - offset) / scale[b]!)),
    );
  }
  // f32 arithmetic, as torch's dequantize_blockwise: code[q] * scale, then + offset.
  const back = Float32Array.from(q, (v, i) =>
    Math.fround(Math.fround(NESTED_CODE[v]! * scale[Math.floor(i / NESTED_BLOCK)]!) + offset),
  );
  return { offset, scale, q, back };
}

/** One linear W [out, in]'s tensors into `out`; returns the f32 W the file decodes to. */
function nf4Tensors(
  name: string,
  w: Float32Array,
  shape: number[],
  double: boolean,
  out: Map<string, TensorEntry>,
): Float32Array {
  const n = w.length;
  const { packed, absmax } = quantizeNf4(w);
  const bytes = new Uint8Array(packed.buffer).slice(0, Math.ceil(n / 2));
  out.set(name, u8(bytes, [Math.ceil(n / 2), 1]));
  out.set(`${name}.quant_map`, float32Entry(NF4_CODE, [16]));
  const state: Record<string, unknown> = {
    quant_type: 'nf4',
    blocksize: NF4_BLOCK,
    dtype: 'bfloat16',
    shape,
  };
  let decodedAbsmax = absmax;
  if (double) {
    const d = doublyQuantized(absmax);
    out.set(`${name}.absmax`, u8(d.q, [d.q.length]));
    out.set(`${name}.nested_absmax`, float32Entry(d.scale, [d.scale.length]));
    out.set(`${name}.nested_quant_map`, float32Entry(NESTED_CODE, [256]));
    Object.assign(state, {
      nested_blocksize: NESTED_BLOCK,
      nested_offset: d.offset,
      nested_dtype: 'float32',
    });
    decodedAbsmax = d.back;
  } else {
    out.set(`${name}.absmax`, float32Entry(absmax, [absmax.length]));
  }
  const stateBytes = jsonBytes(state);
  out.set(`${name}.quant_state.bitsandbytes__nf4`, u8(stateBytes, [stateBytes.length]));
  const decoded = new Float32Array(n);
  dequantizeNf4Into({ packed, absmax: decodedAbsmax }, shape as [number, number], false, decoded);
  return decoded;
}

/**
 * Writes `weights` of the Llama-family config `json` as a bitsandbytes
 * 4-bit folder in `dir` (the head and every non-linear tensor unquantized,
 * as transformers leaves them); returns the weights its files decode to.
 */
export async function writeBnb4bitFolder(
  dir: string,
  json: Record<string, unknown>,
  weights: WeightMap,
  options: { doubleQuant?: boolean; quantization?: object } = {},
): Promise<WeightMap> {
  const config = modelConfigFromJson(json, 'writeBnb4bitFolder');
  const linear = new Set(modelLinearModules(config).map((m) => `${m.name}.weight`));
  const tensors = new Map<string, TensorEntry>();
  const decoded: WeightMap = new Map();
  for (const [name, w] of weights) {
    if (!linear.has(name)) {
      tensors.set(name, float32Entry(w.data, w.shape));
      decoded.set(name, w);
      continue;
    }
    const data = nf4Tensors(name, w.data, w.shape, options.doubleQuant ?? false, tensors);
    decoded.set(name, { shape: w.shape, data });
  }
  await mkdir(dir, { recursive: true });
  await writeSafetensorsFile(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const quantization_config = options.quantization ?? BNB_4BIT_QUANTIZATION;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...json, quantization_config }));
  return decoded;
}
