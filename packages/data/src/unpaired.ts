// KTO's unpaired feedback: a JSONL file of TRL's unpaired preference lines,
//   {"prompt": "...", "completion": "...", "label": true}          standard, text
//   {"prompt": [messages], "completion": [messages], "label": false}   conversational
// (label: whether the completion is desirable), or of preference pairs, which
// are unpaired as TRL's KTOTrainer does (unpair_preference_dataset: in blocks
// of 1000 pairs, the block's chosen responses, desirable, then its rejected
// ones), read into examples, and each
// example padded to the context next to its KL sequence in one row of 2 x T
// tokens, [prompt + completion | prompt + another example's completion].
// KTO estimates the policy's KL divergence from the reference on such
// mismatched pairs; TRL builds them when it prepares the dataset, cycling the
// completions by one within consecutive chunks of the per-device batch size,
// and so does unpairedRows, in chunks of the run's batch size. One row is one
// example, so the sampler, shards, ledger and N-workers-equal-one hold as for
// rows.
import { type ChatMessage, parseMessages } from './chat.js';
import { chatExamples, parseJsonObject, readJsonlRecords } from './jsonl.js';
import { padOrTruncate, type SequenceRow } from './pack.js';
import { parsePreferenceLine } from './preference-line.js';
import { DEFAULT_REPORT_FIRST, DatasetError, type BadLinePolicy } from './problems.js';
import type { ReadSummary } from './problems.js';
import {
  IGNORE_INDEX,
  tokenizePromptCompletion,
  type TextTokenizer,
  type TokenizedExample,
} from './tokenizer.js';
import { firstTrainedPosition } from './untrainable.js';

/** One unpaired example: its prompt and completion tokenized, and whether the completion is desirable. */
export interface UnpairedExample {
  example: TokenizedExample;
  /** Tokens before the completion (the prompt, rendered). */
  promptLength: number;
  desirable: boolean;
}

/** One line to an example, or a message saying what is wrong with it. */
export function parseUnpairedLine(
  line: string,
  tokenizer: TextTokenizer,
): UnpairedExample | string {
  const o = parseJsonObject(line);
  return typeof o === 'string' ? o : unpairedOf(o, tokenizer);
}

/** A parsed line's example, or what is wrong with it. */
function unpairedOf(
  o: Record<string, unknown>,
  tokenizer: TextTokenizer,
): UnpairedExample | string {
  if (isPair(o)) {
    return (
      'a preference pair ("chosen", "rejected"), where this reads one line of unpaired feedback; ' +
      'readUnpairedJsonl unpairs a file of pairs'
    );
  }
  const missing = (['prompt', 'completion', 'label'] as const).find((k) => o[k] === undefined);
  if (missing) {
    return `expected "prompt", "completion" and "label" (KTO's unpaired feedback, TRL's format); "${missing}" is missing`;
  }
  if (typeof o.label !== 'boolean') {
    return `"label" must be true (a desirable completion) or false (an undesirable one), found ${JSON.stringify(o.label)}`;
  }
  const lists = [o.prompt, o.completion].filter(Array.isArray).length;
  if (lists === 1)
    return 'mixes text and message lists: write "prompt" and "completion" both as text or both as messages';
  const example = lists === 0 ? textExample(tokenizer, o) : conversationalExample(tokenizer, o);
  if (typeof example === 'string') return example;
  const promptLength = example.labels.findIndex((l) => l !== IGNORE_INDEX);
  if (promptLength < 0) return 'the completion renders to no trained token';
  return { example, promptLength, desirable: o.label };
}

function textExample(
  tokenizer: TextTokenizer,
  o: Record<string, unknown>,
): TokenizedExample | string {
  for (const key of ['prompt', 'completion'] as const) {
    if (typeof o[key] !== 'string') return `"${key}" must be a string, found ${typeof o[key]}`;
  }
  if (o.completion === '') return '"completion" is empty';
  return tokenizePromptCompletion(tokenizer, o.prompt as string, o.completion as string);
}

function conversationalExample(
  tokenizer: TextTokenizer,
  o: Record<string, unknown>,
): TokenizedExample | string {
  const prompt = parseMessages(o.prompt, 'prompt');
  const completion = parseMessages(o.completion, 'completion');
  if (typeof prompt === 'string') return prompt;
  if (typeof completion === 'string') return completion;
  const messages: ChatMessage[] = [...prompt, ...completion];
  const examples = chatExamples(tokenizer, messages, prompt.length);
  if (typeof examples === 'string') return `"completion": ${examples}`;
  if (examples.length !== 1) {
    return `"completion" has ${examples.length} assistant turns that the chat template renders apart; KTO needs one completion`;
  }
  return examples[0]!;
}

const isPair = (o: Record<string, unknown>) =>
  o.completion === undefined && o.chosen !== undefined && o.rejected !== undefined;

/**
 * A preference pair as two unpaired examples, [chosen (desirable), rejected],
 * in TRL's four preference formats (an implicit prompt extracted as TRL's
 * extract_prompt does), or what is wrong with it.
 */
export function parsePairAsUnpaired(
  line: string,
  tokenizer: TextTokenizer,
): [UnpairedExample, UnpairedExample] | string {
  const pair = parsePreferenceLine(line, tokenizer);
  if (typeof pair === 'string') return pair;
  const sides: UnpairedExample[] = [];
  for (const [example, desirable] of [
    [pair.chosen, true],
    [pair.rejected, false],
  ] as const) {
    const promptLength = example.labels.findIndex((l) => l !== IGNORE_INDEX);
    if (promptLength < 0)
      return `the ${desirable ? 'chosen' : 'rejected'} response renders to no trained token`;
    sides.push({ example, promptLength, desirable });
  }
  return sides as [UnpairedExample, UnpairedExample];
}

/** TRL's unpair_preference_dataset maps batches of this many pairs (datasets.map's default). */
export const UNPAIR_BLOCK = 1000;

export interface UnpairedRead extends ReadSummary {
  examples: UnpairedExample[];
  /** The 1-based line each example came from. */
  lines: number[];
  /** How many preference pairs were unpaired into the examples (0: a file of unpaired feedback). */
  pairs: number;
}

/**
 * Reads a JSONL file of {"prompt", "completion", "label"} lines, or of
 * preference pairs unpaired as TRL's KTOTrainer does (a file holds one kind),
 * skipping bad lines under `policy`.
 */
export async function readUnpairedJsonl(
  file: string,
  tokenizer: TextTokenizer,
  policy: BadLinePolicy = {},
): Promise<UnpairedRead> {
  const parse = (line: string): UnpairedExample[] | string => {
    const o = parseJsonObject(line);
    if (typeof o === 'string') return o;
    if (isPair(o)) return parsePairAsUnpaired(line, tokenizer);
    const e = unpairedOf(o, tokenizer);
    return typeof e === 'string' ? e : [e];
  };
  const { items, lines, ...read } = await readJsonlRecords(file, parse, policy);
  const pairLines = lines.filter((_, i) => items[i]!.length === 2);
  if (pairLines.length === 0) return { ...read, examples: items.flat(), lines, pairs: 0 };
  if (pairLines.length < items.length) {
    const other = lines.find((_, i) => items[i]!.length === 1)!;
    throw new DatasetError(
      `${file}: line ${pairLines[0]} is a preference pair and line ${other} unpaired feedback; ` +
        'a file holds one kind (KTO unpairs a file of pairs itself)',
    );
  }
  // TRL's order: each block's chosen responses, then its rejected ones.
  const examples: UnpairedExample[] = [];
  const exampleLines: number[] = [];
  for (let start = 0; start < items.length; start += UNPAIR_BLOCK) {
    const end = Math.min(start + UNPAIR_BLOCK, items.length);
    for (const side of [0, 1]) {
      for (let i = start; i < end; i++) {
        examples.push(items[i]![side]!);
        exampleLines.push(lines[i]!);
      }
    }
  }
  return { ...read, examples, lines: exampleLines, pairs: items.length };
}

/** KTO rows, each row's source line, and what was cut or dropped to make them. */
export interface UnpairedRows {
  rows: SequenceRow[];
  rowLines: Int32Array;
  /** Examples dropped: no completion token within the context. */
  dropped: { line: number; message: string }[];
  /** Sides (completions or KL sequences) longer than the context, cut at its end, and the tokens lost. */
  truncatedSides: number;
  truncatedTokens: number;
}

/**
 * Each example as one row of 2 x `seqLen`, [prompt + completion | prompt +
 * KL completion], each side right-padded (or cut) with `padId`, the row's
 * `desirable` its label. The KL completion of the i-th kept example of a
 * chunk of `chunk` consecutive ones is the (i - 1)-th's, the first's the
 * chunk's last (TRL's get_kl_completion_ids). An example whose prompt leaves
 * its completion no trained token within seqLen is dropped first.
 */
export function unpairedRows(
  examples: readonly UnpairedExample[],
  lines: readonly number[],
  seqLen: number,
  padId: number,
  chunk: number,
): UnpairedRows {
  if (!Number.isSafeInteger(chunk) || chunk < 1)
    throw new RangeError(`chunk ${chunk} must be >= 1`);
  const out: UnpairedRows = {
    rows: [],
    rowLines: new Int32Array(0),
    dropped: [],
    truncatedSides: 0,
    truncatedTokens: 0,
  };
  const kept: UnpairedExample[] = [];
  const keptLines: number[] = [];
  examples.forEach((e, i) => {
    const line = lines[i] ?? 0;
    if (firstTrainedPosition(e.example, seqLen) >= 0) {
      kept.push(e);
      keptLines.push(line);
    } else {
      const message = `the completion has no token within --seq-len ${seqLen} after its prompt`;
      out.dropped.push({ line, message });
    }
  });
  kept.forEach((e, i) => {
    const start = i - (i % chunk);
    const previous = i === start ? Math.min(start + chunk, kept.length) - 1 : i - 1;
    const sides = [e.example, klExample(e, kept[previous]!)].map((x) =>
      padOrTruncate(x, seqLen, padId),
    );
    for (const side of sides) {
      if (side.truncated > 0) out.truncatedSides++;
      out.truncatedTokens += side.truncated;
    }
    out.rows.push(joinSides(sides[0]!, sides[1]!, seqLen, e.desirable));
  });
  out.rowLines = Int32Array.from(keptLines);
  if (out.rows.length === 0 && examples.length > 0) {
    const first = out.dropped.slice(0, DEFAULT_REPORT_FIRST);
    throw new DatasetError(
      `none of the ${examples.length} examples can train within --seq-len ${seqLen}; raise --seq-len or shorten the prompts:` +
        first.map((d) => `\n  line ${d.line}: ${d.message}`).join(''),
    );
  }
  return out;
}

/** `e`'s prompt followed by `other`'s completion, labelled as a completion. */
function klExample(e: UnpairedExample, other: UnpairedExample): TokenizedExample {
  const prompt = e.example.ids.subarray(0, e.promptLength);
  const ids = new Int32Array(prompt.length + other.example.ids.length - other.promptLength);
  ids.set(prompt);
  ids.set(other.example.ids.subarray(other.promptLength), prompt.length);
  const labels = new Int32Array(ids.length).fill(IGNORE_INDEX);
  labels.set(other.example.labels.subarray(other.promptLength), prompt.length);
  return { ids, labels };
}

/** [completion | KL], each T long: a row of 2T. */
function joinSides(
  a: SequenceRow,
  b: SequenceRow,
  seqLen: number,
  desirable: boolean,
): SequenceRow {
  const ids = new Int32Array(2 * seqLen);
  const labels = new Int32Array(2 * seqLen);
  ids.set(a.ids);
  ids.set(b.ids, seqLen);
  labels.set(a.labels);
  labels.set(b.labels, seqLen);
  return { ids, labels, length: a.length + b.length, desirable };
}
