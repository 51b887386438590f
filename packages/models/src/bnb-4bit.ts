// A folder saved by transformers with a bitsandbytes 4-bit quantization
// config (`BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")`,
// e.g. the "-bnb-4bit" checkpoints published for QLoRA): config.json's
// `quantization_config`, and for each quantized linear layer X, beside its
// packed bytes `X.weight` (U8 [n/2, 1]), the quantization state as
// bitsandbytes' QuantState.as_dict(packed=True) writes it:
//   X.weight.absmax          F32 [n/64], or U8 with double quantization
//   X.weight.quant_map       F32 [16] (the NF4 values)
//   X.weight.nested_absmax   F32 [ceil(n/64/256)]   (double quantization)
//   X.weight.nested_quant_map F32 [256]             (double quantization)
//   X.weight.quant_state.bitsandbytes__nf4  U8: JSON {quant_type, blocksize,
//     dtype, shape, nested_blocksize, nested_offset, ...}
// The bytes are core's NF4 layout (lora/nf4.ts) as they are; a doubly
// quantized absmax is dequantized to f32 (nested_quant_map[q] *
// nested_absmax[i / nested_blocksize] + nested_offset, bitsandbytes'
// dequantize_blockwise). Other quantization methods are refused by name.
import { NF4_BLOCK, NF4_CODE, type Nf4Packed, type TensorEntry, toFloat32 } from '@lorafleet/core';
import { ModelConfigError } from './gpt2/config.js';

const QUANT_STATE = 'quant_state.bitsandbytes__nf4';
/** The tensors beside X.weight that hold its quantization state. */
export const BNB_STATE_SUFFIXES = [
  'absmax',
  'quant_map',
  'nested_absmax',
  'nested_quant_map',
  QUANT_STATE,
] as const;

/**
 * config.json's quantization_config: false without one, true for the
 * bitsandbytes NF4 this project loads, or an error naming what it cannot.
 * (Modules left unquantized, llm_int8_skip_modules and lm_head, are told
 * apart by their tensors: no quantization state.)
 */
export function readBnb4bitConfig(json: Record<string, unknown>, source: string): boolean {
  const q = json.quantization_config;
  if (q === undefined || q === null) return false;
  const c = q as Record<string, unknown>;
  const method = c.quant_method ?? (c.load_in_4bit || c.load_in_8bit ? 'bitsandbytes' : undefined);
  const refuse = (what: string) =>
    new ModelConfigError(
      `${source}: quantization_config is ${what}; this project loads bitsandbytes 4-bit NF4 folders ` +
        '(load_in_4bit, bnb_4bit_quant_type "nf4") and unquantized ones: use the unquantized model ' +
        '(and --base-dtype nf4 for QLoRA)',
    );
  if (method !== 'bitsandbytes') throw refuse(`quant_method ${JSON.stringify(method)}`);
  if (c.load_in_4bit !== true) throw refuse('bitsandbytes 8-bit (LLM.int8)');
  if ((c.bnb_4bit_quant_type ?? 'fp4') !== 'nf4') {
    throw refuse(`bitsandbytes 4-bit ${JSON.stringify(c.bnb_4bit_quant_type ?? 'fp4')}`);
  }
  const storage = c.bnb_4bit_quant_storage ?? 'uint8';
  if (storage !== 'uint8') throw refuse(`bitsandbytes 4-bit stored as ${JSON.stringify(storage)}`);
  return true;
}

/** A quantization state's JSON (the U8 tensor quant_state.bitsandbytes__nf4). */
function stateJson(entry: TensorEntry, where: string): Record<string, unknown> {
  try {
    return JSON.parse(new TextDecoder().decode(entry.bytes)) as Record<string, unknown>;
  } catch (err) {
    throw new ModelConfigError(`${where}.${QUANT_STATE}: not JSON (${(err as Error).message})`);
  }
}

/** absmax [blocks] in f32: as stored, or dequantized from its 8-bit double quantization. */
function absmaxOf(state: Map<string, TensorEntry>, json: Record<string, unknown>, where: string) {
  const get = (suffix: string) => {
    const e = state.get(suffix);
    if (!e) throw new ModelConfigError(`${where}: missing ${where}.${suffix}`);
    return e;
  };
  const absmax = get('absmax');
  if (absmax.dtype !== 'U8') return toFloat32(absmax, `${where}.absmax`, where);
  const code = toFloat32(get('nested_quant_map'), `${where}.nested_quant_map`, where);
  const scale = toFloat32(get('nested_absmax'), `${where}.nested_absmax`, where);
  const block = Number(json.nested_blocksize);
  const offset = Number(json.nested_offset);
  if (!(Number.isInteger(block) && block > 0) || !Number.isFinite(offset) || code.length !== 256) {
    throw new ModelConfigError(
      `${where}: double quantization needs nested_blocksize, nested_offset and a 256-value nested_quant_map`,
    );
  }
  const q = absmax.bytes;
  if (scale.length !== Math.ceil(q.length / block)) {
    throw new ModelConfigError(
      `${where}.nested_absmax: ${scale.length} values for ${q.length} absmax`,
    );
  }
  // f32 arithmetic, as torch: code[q] * scale, then + offset (a float32 tensor).
  const add = Math.fround(offset);
  return Float32Array.from(
    q,
    (v, i) => Math.fround(code[v]! * scale[Math.floor(i / block)]!) + add,
  );
}

/**
 * One linear layer's W from the folder, W [rows, cols] = [out, in] as
 * bitsandbytes quantized it: the packed bytes as core's NF4 words and the
 * absmax in f32, every part checked against the shape.
 */
export function readBnb4bitWeight(
  weight: TensorEntry,
  state: Map<string, TensorEntry>,
  shape: readonly [number, number],
  where: string,
): Nf4Packed {
  const n = shape[0] * shape[1];
  const qs = state.get(QUANT_STATE);
  if (!qs)
    throw new ModelConfigError(
      `${where}: missing ${where}.${QUANT_STATE} (a bitsandbytes NF4 weight)`,
    );
  const json = stateJson(qs, where);
  const problems: string[] = [];
  if (json.quant_type !== 'nf4')
    problems.push(`quant_type ${JSON.stringify(json.quant_type)}, not "nf4"`);
  if (json.blocksize !== NF4_BLOCK)
    problems.push(`blocksize ${String(json.blocksize)}, not ${NF4_BLOCK}`);
  const stored = Array.isArray(json.shape) ? json.shape.join(',') : String(json.shape);
  if (stored !== shape.join(','))
    problems.push(`shape [${stored}], the config needs [${shape.join(',')}]`);
  if (weight.dtype !== 'U8' || weight.bytes.length !== Math.ceil(n / 2)) {
    problems.push(
      `${weight.dtype} [${weight.shape}] of packed bytes, not U8 [${Math.ceil(n / 2)}, 1]`,
    );
  }
  const map = state.get('quant_map');
  const code = map ? toFloat32(map, `${where}.quant_map`, where) : null;
  if (code && !code.every((v, k) => v === NF4_CODE[k])) problems.push('a quant_map other than NF4');
  if (problems.length > 0) throw new ModelConfigError(`${where}: ${problems.join('; ')}`);
  const absmax = absmaxOf(state, json, where);
  if (absmax.length !== Math.ceil(n / NF4_BLOCK)) {
    throw new ModelConfigError(`${where}.absmax: ${absmax.length} values for ${n} weights`);
  }
  const bytes = new Uint8Array(4 * Math.ceil(n / 8)); // whole int32 words, zero-padded
  bytes.set(weight.bytes);
  return { packed: new Int32Array(bytes.buffer), absmax };
}
