// Pieces every command shares: the backend option, loading a model folder
// with an optional adapter, copying tokenizer files next to a saved model.
import {
  BACKENDS,
  BASE_DTYPES,
  type BackendName,
  type BaseDtype,
  loadPeftAdapter,
  useBackend,
} from '@lorafleet/core';
import {
  type LoadedModel,
  type ModelConfig,
  importPeftAdapter,
  loadModel,
  readModelConfig,
  storeBasesAs,
} from '@lorafleet/models';
import { type OptionSpec } from './args.js';

export const backendOption = {
  kind: 'string',
  value: 'NAME',
  description: 'compute backend',
  choices: BACKENDS,
  default: 'wasm',
} as const satisfies OptionSpec;

export const baseDtypeOption = {
  kind: 'string',
  choices: BASE_DTYPES,
  description:
    'how the frozen base weights of the linear layers are stored on the device: bf16 or f16 halve ' +
    "their memory, nf4 (QLoRA's 4-bit NormalFloat, bitsandbytes' blocks of 64) takes 0.14x; " +
    'unpacked to f32 for each matmul; embeddings, norms and LoRA stay f32 ' +
    '(default: f32, or nf4 for a bitsandbytes 4-bit model folder)',
} as const satisfies OptionSpec;

/**
 * --base-dtype as given, else the folder's: nf4 for a bitsandbytes 4-bit
 * folder (its linear layers stay as stored; a full fine-tune needs f32), f32
 * otherwise.
 */
export function baseDtypeFor(
  given: BaseDtype | undefined,
  config: Pick<ModelConfig, 'bnbNf4'>,
  fullFinetune = false,
): BaseDtype {
  return given ?? (config.bnbNf4 && !fullFinetune ? 'nf4' : 'f32');
}

export async function startBackend(options: { backend: BackendName }): Promise<BackendName> {
  await useBackend(options.backend);
  return options.backend;
}

export const ADAPTER_NAME = 'default';

/**
 * Loads a model folder and, if given, a PEFT adapter into it (active, not
 * merged), with the base weights stored as `baseDtype` (default f32).
 */
export async function loadModelAndAdapter(
  modelDir: string,
  adapterDir?: string,
  given?: BaseDtype,
): Promise<LoadedModel & { adapted: number }> {
  const baseDtype = baseDtypeFor(given, await readModelConfig(modelDir));
  const adapter = adapterDir ? await loadPeftAdapter(adapterDir) : null;
  // An adapter's whole tensors (modules_to_save) are written over f32 base
  // weights, then packed; otherwise W is packed as the layers are built.
  const wholeTensors = (adapter?.tensors?.size ?? 0) > 0;
  const loaded = await loadModel(modelDir, { baseDtype: wholeTensors ? 'f32' : baseDtype });
  const adapted = adapter ? importPeftAdapter(loaded.model, adapter, ADAPTER_NAME) : 0;
  await storeBasesAs(loaded.model, baseDtype);
  return { ...loaded, adapted };
}

/** Copies whichever tokenizer files the source folder has (one list, in the worker runtime). */
export { copyTokenizerFiles } from '@lorafleet/worker';

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}
