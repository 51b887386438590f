// A model folder's generation_config.json (transformers' GenerationConfig):
// the stop tokens and sampling defaults its authors chose, which `lorafleet
// generate` uses where its own option is not given.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const GENERATION_CONFIG_FILE = 'generation_config.json';

/** The fields this project reads; each is absent when the file does not set it. */
export interface GenerationDefaults {
  /** eos_token_id: one id or a list (Llama 3 ends turns with several). */
  eosTokenIds?: number[];
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** The file's object -> its defaults; a field of the wrong type is an error naming it. */
export function generationDefaultsFromJson(json: unknown, source: string): GenerationDefaults {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new Error(`${source}: must be a JSON object`);
  const j = json as Record<string, unknown>;
  const bad = (field: string, expected: string): never => {
    throw new Error(`${source}: ${field} is ${JSON.stringify(j[field])}, expected ${expected}`);
  };
  const out: GenerationDefaults = {};
  const isId = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  const eos = j.eos_token_id;
  if (eos != null) {
    const ids = Array.isArray(eos) ? eos : [eos];
    if (!ids.every(isId)) bad('eos_token_id', 'a token id or a list of them');
    out.eosTokenIds = ids as number[];
  }
  if (j.do_sample != null) {
    if (typeof j.do_sample !== 'boolean') bad('do_sample', 'true or false');
    out.doSample = j.do_sample as boolean;
  }
  const num = (field: string, ok: (x: number) => boolean, expected: string) => {
    const v = j[field];
    if (v == null) return undefined;
    if (typeof v !== 'number' || !ok(v)) bad(field, expected);
    return v as number;
  };
  const temperature = num('temperature', (x) => x >= 0, 'a number >= 0');
  const topK = num('top_k', (x) => Number.isSafeInteger(x) && x >= 0, 'an integer >= 0');
  const topP = num('top_p', (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  if (temperature !== undefined) out.temperature = temperature;
  if (topK !== undefined) out.topK = topK;
  if (topP !== undefined) out.topP = topP;
  return out;
}

/** The folder's generation_config.json, or null when it has none. */
export async function readGenerationConfig(dir: string): Promise<GenerationDefaults | null> {
  const path = join(dir, GENERATION_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  return generationDefaultsFromJson(json, path);
}
