// The tokenizer contract and the one example type every reader produces.

import type { ChatFormat } from './chat.js';

/**
 * What the data package needs from a tokenizer. Structural, so the models
 * package's tokenizers fit without data importing models. `encode` must never
 * emit `eosId` for plain text: document ends are ours to mark.
 */
export interface TextTokenizer {
  encode(text: string): number[];
  readonly eosId: number;
  readonly vocabSize: number;
  /** Put before every text document and prompt when set (Llama 2's <s>). */
  readonly bosId?: number;
  /** The model's chat template; {"messages"} rows need it. */
  readonly chat?: ChatFormat;
}

/** Label value meaning "no loss at this position" (Hugging Face's -100). */
export const IGNORE_INDEX = -100;

/**
 * Which tokens of a prompt/completion or conversation record carry the loss:
 * TRL's SFTConfig `completion_only_loss` and `assistant_only_loss`. Text
 * documents and `input_ids` records are not affected.
 */
export interface LossScope {
  /** Prompt/completion records (text or conversations): the completion only, or every token too. */
  completionOnly: boolean;
  /** Conversations: the assistant turns only, or every token of the rendered conversation. */
  assistantOnly: boolean;
}

/** The loss on completions and assistant turns only. */
export const DEFAULT_LOSS_SCOPE: LossScope = { completionOnly: true, assistantOnly: true };

/**
 * One tokenized example. `labels[i]` is `ids[i]` where the token is trained and
 * IGNORE_INDEX where it is not (prompt, padding). Labels are NOT shifted: the
 * model's loss predicts `labels[i + 1]` from position i, as Hugging Face does,
 * so `labels[0]` never counts.
 */
export interface TokenizedExample {
  ids: Int32Array; // [n]
  labels: Int32Array; // [n]
}

/**
 * A document trained on every token, ended by EOS (also trained: the model
 * learns to stop), after BOS when the tokenizer has one.
 */
export function tokenizeText(tokenizer: TextTokenizer, text: string): TokenizedExample {
  const tokens = [...bos(tokenizer), ...tokenizer.encode(text)];
  const ids = new Int32Array(tokens.length + 1);
  ids.set(tokens);
  ids[tokens.length] = tokenizer.eosId;
  return { ids, labels: ids.slice() };
}

function bos(tokenizer: TextTokenizer): number[] {
  return tokenizer.bosId === undefined ? [] : [tokenizer.bosId];
}

/**
 * Prompt and completion tokenized separately (so no token straddles the seam)
 * and concatenated, EOS after the completion, BOS (if any) before the prompt.
 * Loss on completion + EOS only, or with `completionOnly` false on every token.
 */
export function tokenizePromptCompletion(
  tokenizer: TextTokenizer,
  prompt: string,
  completion: string,
  completionOnly = true,
): TokenizedExample {
  const p = [...bos(tokenizer), ...tokenizer.encode(prompt)];
  const c = tokenizer.encode(completion);
  const ids = new Int32Array(p.length + c.length + 1);
  ids.set(p);
  ids.set(c, p.length);
  ids[p.length + c.length] = tokenizer.eosId;
  const labels = ids.slice();
  if (completionOnly) labels.fill(IGNORE_INDEX, 0, p.length);
  return { ids, labels };
}

/**
 * A pre-tokenized example, validated: ids are integers in [0, vocabSize);
 * labels, if given, have the same length and hold IGNORE_INDEX or a valid id.
 * Without labels every token is trained. Throws a RangeError saying which
 * entry is wrong.
 */
export function exampleFromIds(
  ids: readonly unknown[],
  labels: readonly unknown[] | undefined,
  vocabSize: number,
): TokenizedExample {
  if (ids.length === 0) throw new RangeError('"input_ids" is empty');
  const outIds = new Int32Array(ids.length);
  ids.forEach((v, i) => {
    if (!isTokenId(v, vocabSize)) {
      throw new RangeError(
        `"input_ids"[${i}] = ${JSON.stringify(v)} is not an id in [0, ${vocabSize})`,
      );
    }
    outIds[i] = v;
  });
  if (labels === undefined) return { ids: outIds, labels: outIds.slice() };
  if (labels.length !== ids.length) {
    throw new RangeError(`"labels" has ${labels.length} entries but "input_ids" has ${ids.length}`);
  }
  const outLabels = new Int32Array(labels.length);
  labels.forEach((v, i) => {
    if (v !== IGNORE_INDEX && !isTokenId(v, vocabSize)) {
      throw new RangeError(
        `"labels"[${i}] = ${JSON.stringify(v)} is neither ${IGNORE_INDEX} nor an id in [0, ${vocabSize})`,
      );
    }
    outLabels[i] = v as number;
  });
  return { ids: outIds, labels: outLabels };
}

function isTokenId(v: unknown, vocabSize: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < vocabSize;
}
