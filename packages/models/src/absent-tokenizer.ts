// A model folder without a usable tokenizer still trains, evaluates and
// merges on pre-tokenized {"input_ids"} data: the stand-in below carries the
// model's vocabulary size and EOS id, and refuses text with the reason the
// folder's tokenizer could not be loaded, at the moment text must be
// tokenized.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelConfig } from './causal-lm.js';
import type { Tokenizer } from './tokenizer/index.js';

export class AbsentTokenizer implements Tokenizer {
  readonly kind = 'absent' as const;
  readonly vocabSize: number;
  /** config.json's eos_token_id (the first of a list), used only to pad rows; 0 when there is none. */
  readonly eosId: number;

  constructor(
    vocabSize: number,
    eosId: number,
    /** Why the folder's tokenizer is unavailable: shown when text must be tokenized. */
    private readonly reason: string,
  ) {
    this.vocabSize = vocabSize;
    this.eosId = eosId;
  }

  encode(_text: string): number[] {
    throw new Error(
      `text must be tokenized here (a text dataset or a prompt), but the model has no usable tokenizer: ` +
        `${this.reason.replace(/\.$/, '')}. Add the base model's tokenizer files to the folder, ` +
        'or give pre-tokenized {"input_ids": [...]} rows.',
    );
  }

  /** Never throws (the Tokenizer contract): ids are shown as numbers. */
  decode(ids: ArrayLike<number>): string {
    return `[${Array.from(ids).join(' ')}]`;
  }
}

/** What a loaded model folder's tokenizer is: its own, or an AbsentTokenizer. */
export type ModelTokenizer = Tokenizer;

/** The folder's tokenizer, or an AbsentTokenizer holding the reason it could not be loaded. */
export async function tokenizerOrAbsent(
  dir: string,
  config: ModelConfig,
  load: (dir: string) => Promise<Tokenizer>,
): Promise<ModelTokenizer> {
  try {
    return await load(dir);
  } catch (error) {
    return new AbsentTokenizer(config.vocabSize, await configEosId(dir), (error as Error).message);
  }
}

async function configEosId(dir: string): Promise<number> {
  try {
    const json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const eos = Array.isArray(json.eos_token_id) ? json.eos_token_id[0] : json.eos_token_id;
    return Number.isSafeInteger(eos) && (eos as number) >= 0 ? (eos as number) : 0;
  } catch {
    return 0;
  }
}
