// A Hugging Face GPT-2 folder on disk: config.json + model.safetensors.
// Tensor names may carry the "transformer." prefix (GPT2LMHeadModel) or not
// (GPT2Model); Conv1D weights are stored [in, out].
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  float32Entry,
  readSafetensorsFile,
  toFloat32,
  writeFileAtomic,
  writeSafetensorsFile,
  type TensorEntry,
} from '@lorafleet/core';
import {
  type Gpt2Config,
  gpt2ConfigFromJson,
  gpt2ConfigToJson,
  ModelConfigError,
} from './config.js';
import { gpt2WeightShapes, PREFIX, type WeightMap } from './model.js';
import { missingConfigMessage } from '../folder-hints.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/** Buffers that old GPT-2 checkpoints carry and the model recomputes. */
const IGNORED = /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** A model folder's config.json, parsed; errors name the file and say what a folder needs. */
export async function readConfigJson(dir: string): Promise<{ json: unknown; path: string }> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new ModelConfigError(await missingConfigMessage(dir, path));
  }
  try {
    return { json: JSON.parse(text), path };
  } catch (err) {
    throw new ModelConfigError(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

export async function readGpt2Config(dir: string): Promise<Gpt2Config> {
  const { json, path } = await readConfigJson(dir);
  return gpt2ConfigFromJson(json, path);
}

/**
 * Reads the weights and checks them against the config: every missing,
 * unexpected or wrongly shaped tensor is reported by name, all at once.
 */
export async function readGpt2Weights(dir: string, config: Gpt2Config): Promise<WeightMap> {
  const path = join(dir, WEIGHTS_FILE);
  if (!(await exists(path))) {
    const hint = (await exists(join(dir, 'pytorch_model.bin')))
      ? ' (the folder has pytorch_model.bin: re-save it with save_pretrained(..., safe_serialization=True))'
      : (await exists(join(dir, 'model.safetensors.index.json')))
        ? ' (sharded checkpoints are not supported yet)'
        : '';
    throw new ModelConfigError(`${path}: not found${hint}`);
  }
  const file = await readSafetensorsFile(path);
  const expected = gpt2WeightShapes(config);
  const weights: WeightMap = new Map();
  const problems: string[] = [];
  const seen = new Map<string, string>(); // canonical name -> the key it came from
  for (const [raw, entry] of file.tensors) {
    if (IGNORED.test(raw)) continue;
    if (raw === 'lm_head.weight') {
      // Tied to wte: not loaded, but a wrongly shaped head means a different model.
      const [V, C] = [config.vocabSize, config.nEmbd];
      if (entry.shape.length !== 2 || entry.shape[0] !== V || entry.shape[1] !== C) {
        problems.push(`lm_head.weight has shape [${entry.shape}], the config needs [${V},${C}]`);
      }
      continue;
    }
    const name = raw.startsWith(PREFIX) ? raw : `${PREFIX}${raw}`;
    const shape = expected.get(name);
    const earlier = seen.get(name);
    if (earlier !== undefined) {
      problems.push(
        `${raw} and ${earlier} are the same tensor (with and without "${PREFIX}"); keep one`,
      );
      continue;
    }
    seen.set(name, raw);
    if (!shape) {
      problems.push(`unexpected tensor ${raw} [${entry.shape}]`);
      continue;
    }
    if (shape.length !== entry.shape.length || shape.some((d, i) => d !== entry.shape[i])) {
      problems.push(`${raw} has shape [${entry.shape}], the config needs [${shape}]`);
      continue;
    }
    weights.set(name, { shape, data: toFloat32(entry, raw, path) });
  }
  for (const name of expected.keys()) {
    if (!seen.has(name)) problems.push(`missing tensor ${name}`);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 12).join('\n  ');
    const more = problems.length > 12 ? `\n  ... and ${problems.length - 12} more` : '';
    throw new ModelConfigError(
      `${path}: the weights do not match ${join(dir, CONFIG_FILE)}:\n  ${shown}${more}`,
    );
  }
  return weights;
}

/**
 * Writes a folder that this project and Hugging Face transformers both load:
 * config.json (+ extra fields) and model.safetensors with GPT2LMHeadModel's
 * names (the tied lm_head is left out, as save_pretrained does).
 */
export async function writeGpt2Folder(
  dir: string,
  config: Gpt2Config,
  weights: WeightMap,
  options: { dtype?: 'F32' | 'F16' | 'BF16'; configExtra?: Record<string, unknown> } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, TensorEntry>();
  for (const [name, shape] of gpt2WeightShapes(config)) {
    const w = weights.get(name);
    if (!w) throw new Error(`cannot save the model: weight ${name} is missing`);
    if (w.data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new Error(
        `cannot save the model: ${name} has ${w.data.length} values, shape [${shape}]`,
      );
    }
    tensors.set(name, float32Entry(w.data, shape, options.dtype ?? 'F32'));
  }
  await writeSafetensorsFile(join(dir, WEIGHTS_FILE), tensors, { format: 'pt' });
  const json = gpt2ConfigToJson(config, options.configExtra);
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(json, null, 2) + '\n');
}
