// JSON Lines datasets. Each non-blank line is one object of one of three shapes:
//   {"text": "..."}                          loss on every token, EOS appended
//   {"prompt": "...", "completion": "..."}   loss on completion + EOS only
//   {"input_ids": [...], "labels": [...]}    pre-tokenized, taken verbatim;
//                                            labels optional, -100 = no loss
//   {"messages": [{"role", "content"}...]}   rendered with the model's chat
//                                            template, loss on assistant turns
//   {"prompt": [...], "completion": [...]}   the same, loss on the assistant
//                                            turns of "completion" only
// Other keys (ids, metadata) are ignored. Blank lines are skipped silently.
// A LossScope widens the loss of prompt/completion and conversation records
// (TRL's completion_only_loss and assistant_only_loss set to False). With
// JsonlOptions.columns, records are read by named fields instead (columns.ts).

import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { type ChatMessage, parseMessages, tokenizeChat } from './chat.js';
import { type CsvColumns, columnsExample } from './columns.js';
import {
  DatasetError,
  ProblemLog,
  type BadLinePolicy,
  type ReadResult,
  type ReadSummary,
} from './problems.js';
import {
  DEFAULT_LOSS_SCOPE,
  type LossScope,
  exampleFromIds,
  tokenizePromptCompletion,
  tokenizeText,
  type TextTokenizer,
  type TokenizedExample,
} from './tokenizer.js';

/**
 * The lines of a file, read as a stream: the file's size is bounded by the
 * disk, not by the longest string a JS engine can hold (~512 MiB in V8); only
 * one line must fit in a string. A leading BOM is dropped; so is the '\r' of
 * a CRLF line end. `chunkBytes` is the read size (small values for tests).
 */
export async function* readLines(file: string, chunkBytes = 1 << 20): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let first = true;
  const cut = (line: string) => (line.endsWith('\r') ? line.slice(0, -1) : line);
  for await (const chunk of createReadStream(file, { highWaterMark: chunkBytes })) {
    let text = decoder.write(chunk as Buffer);
    if (first && text.length > 0) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      first = false;
    }
    const parts = text.split('\n');
    if (parts.length === 1) {
      pending += parts[0];
      continue;
    }
    yield cut(pending + parts[0]);
    for (let i = 1; i < parts.length - 1; i++) yield cut(parts[i]!);
    pending = parts[parts.length - 1]!;
  }
  pending += decoder.end();
  if (pending !== '') yield cut(pending);
}

/** How readJsonl reads: the loss scope, named fields, and the read size (small values for tests). */
export interface JsonlOptions {
  loss?: LossScope;
  /**
   * Which fields make an example, as a CSV's columns (TRL's
   * dataset_text_field; Alpaca's instruction/output with a prompt template);
   * absent: the record shapes above.
   */
  columns?: CsvColumns;
  chunkBytes?: number;
}

/** Reads a JSONL file into examples, skipping bad lines under `policy`. */
export async function readJsonl(
  file: string,
  tokenizer: TextTokenizer,
  policy: BadLinePolicy = {},
  options: JsonlOptions = {},
): Promise<ReadResult> {
  const loss = options.loss ?? DEFAULT_LOSS_SCOPE;
  const { columns } = options;
  const parse = columns
    ? (line: string) => fieldsRecord(line, tokenizer, columns, loss)
    : (line: string) => parseJsonlRecord(line, tokenizer, loss);
  const read = await readJsonlRecords(file, parse, policy, options.chunkBytes);
  const examples: TokenizedExample[] = [];
  const lines: number[] = [];
  read.items.forEach((record, i) => {
    // A conversation may give one example per assistant turn, all from this line.
    for (const one of record.examples) {
      examples.push(one);
      lines.push(read.lines[i] as number);
    }
  });
  const { items: _, ...summary } = read;
  return { ...summary, examples, lines, prompted: read.items.some((r) => r.prompted) };
}

/**
 * Reads a JSONL file one record a non-blank line, through `parse` (the
 * record, or what is wrong with the line), skipping bad lines under
 * `policy`; a DatasetError from `parse` is named by file:line.
 */
export async function readJsonlRecords<T>(
  file: string,
  parse: (line: string) => T | string,
  policy: BadLinePolicy = {},
  chunkBytes?: number,
): Promise<ReadSummary & { items: T[]; lines: number[] }> {
  const log = new ProblemLog(file, policy);
  const items: T[] = [];
  const lines: number[] = [];
  let lineNumber = 0;
  for await (const line of readLines(file, chunkBytes)) {
    lineNumber++;
    if (line.trim() === '') continue;
    log.record();
    let record: T | string;
    try {
      record = parse(line);
    } catch (e) {
      if (e instanceof DatasetError) throw new DatasetError(`${file}:${lineNumber}: ${e.message}`);
      throw e;
    }
    if (typeof record === 'string') log.reject(lineNumber, record);
    else {
      items.push(record);
      lines.push(lineNumber);
    }
  }
  return { ...log.finish(items.length), items, lines };
}

/** The record shapes, by the key that tells them apart. */
const SHAPES = ['text', 'prompt', 'input_ids', 'messages'] as const;
type Shape = (typeof SHAPES)[number];

/** A record's examples, and whether it was a prompt/completion or a conversation. */
interface JsonlRecord {
  examples: TokenizedExample[];
  prompted: boolean;
}

function parseJsonlRecord(
  line: string,
  tokenizer: TextTokenizer,
  loss: LossScope,
): JsonlRecord | string {
  const o = parseJsonObject(line);
  if (typeof o === 'string') return o;
  const shape = shapeOf(o);
  if (typeof shape === 'string') return shape;
  const made = examplesOf(o, shape.shape, tokenizer, loss);
  if (typeof made === 'string') return made;
  return {
    examples: Array.isArray(made) ? made : [made],
    prompted: shape.shape === 'prompt' || shape.shape === 'messages',
  };
}

/** A record read by named fields (JsonlOptions.columns), or what is wrong with it. */
function fieldsRecord(
  line: string,
  tokenizer: TextTokenizer,
  columns: CsvColumns,
  loss: LossScope,
): JsonlRecord | string {
  const o = parseJsonObject(line);
  if (typeof o === 'string') return o;
  const example = columnsExample(o, tokenizer, columns, loss.completionOnly);
  return typeof example === 'string'
    ? example
    : { examples: [example], prompted: !('textColumn' in columns) };
}

/**
 * One line to an example (a conversation may give several, see chat.ts), or a
 * message saying what is wrong with it. Throws a DatasetError when the line
 * needs something the tokenizer lacks (a chat template).
 */
export function parseJsonlLine(
  line: string,
  tokenizer: TextTokenizer,
  loss: LossScope = DEFAULT_LOSS_SCOPE,
): TokenizedExample | TokenizedExample[] | string {
  const o = parseJsonObject(line);
  if (typeof o === 'string') return o;
  const shape = shapeOf(o);
  return typeof shape === 'string' ? shape : examplesOf(o, shape.shape, tokenizer, loss);
}

/** Which shape a record has, or what is wrong with it. */
function shapeOf(o: Record<string, unknown>): { shape: Shape } | string {
  if ('chosen' in o && 'rejected' in o && !('completion' in o)) {
    return 'a preference pair ("chosen", "rejected"): train such data with --objective dpo, orpo, simpo or cpo';
  }
  const shapes = SHAPES.filter((k) => k in o);
  if (shapes.length === 1) return { shape: shapes[0] as Shape };
  return shapes.length === 0
    ? 'expected a "text", "prompt"/"completion", "messages" or "input_ids" key, found ' +
        (Object.keys(o)
          .map((k) => JSON.stringify(k))
          .join(', ') || 'none')
    : `ambiguous: has ${shapes.map((k) => `"${k}"`).join(' and ')}; keep one`;
}

function examplesOf(
  o: Record<string, unknown>,
  shape: Shape,
  tokenizer: TextTokenizer,
  loss: LossScope,
): TokenizedExample | TokenizedExample[] | string {
  switch (shape) {
    case 'text':
      if (typeof o.text !== 'string') return `"text" must be a string, found ${typeName(o.text)}`;
      if (o.text === '') return '"text" is empty';
      return tokenizeText(tokenizer, o.text);
    case 'messages': {
      const messages = parseMessages(o.messages, 'messages');
      return typeof messages === 'string'
        ? messages
        : chatExamples(tokenizer, messages, 0, loss.assistantOnly);
    }
    case 'prompt':
      if (Array.isArray(o.prompt)) return conversationalPromptCompletion(tokenizer, o, loss);
      if (typeof o.prompt !== 'string') {
        return `"prompt" must be a string, found ${typeName(o.prompt)}`;
      }
      if (typeof o.completion !== 'string') {
        return `"completion" must be a string, found ${typeName(o.completion)}`;
      }
      if (o.completion === '') return '"completion" is empty';
      return tokenizePromptCompletion(tokenizer, o.prompt, o.completion, loss.completionOnly);
    case 'input_ids': {
      if (!Array.isArray(o.input_ids)) {
        return `"input_ids" must be an array, found ${typeName(o.input_ids)}`;
      }
      if (o.labels !== undefined && !Array.isArray(o.labels)) {
        return `"labels" must be an array, found ${typeName(o.labels)}`;
      }
      try {
        return exampleFromIds(o.input_ids, o.labels as unknown[] | undefined, tokenizer.vocabSize);
      } catch (e) {
        if (e instanceof RangeError) return e.message;
        throw e;
      }
    }
  }
}

/** A line's JSON object, or a message saying why it is not one. */
export function parseJsonObject(line: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return `invalid JSON (${(e as Error).message})`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `expected a JSON object, found ${Array.isArray(value) ? 'an array' : typeof value}`;
  }
  return value as Record<string, unknown>;
}

/** TRL's conversational prompt-completion: both are message lists. */
function conversationalPromptCompletion(
  tokenizer: TextTokenizer,
  o: Record<string, unknown>,
  loss: LossScope,
): TokenizedExample[] | string {
  const prompt = parseMessages(o.prompt, 'prompt');
  if (typeof prompt === 'string') return prompt;
  const completion = parseMessages(o.completion, 'completion');
  if (typeof completion === 'string') return completion;
  const trainFrom = loss.completionOnly ? prompt.length : 0;
  return chatExamples(tokenizer, [...prompt, ...completion], trainFrom, loss.assistantOnly);
}

/**
 * A conversation rendered with the tokenizer's chat template, trained from
 * message `trainFrom` on (the assistant turns, or every token), or what is
 * wrong with it; a DatasetError when the model has no chat template.
 */
export function chatExamples(
  tokenizer: TextTokenizer,
  messages: ChatMessage[],
  trainFrom: number,
  assistantOnly = true,
): TokenizedExample[] | string {
  if (!tokenizer.chat) {
    throw new DatasetError(
      "this row is a conversation, which is rendered with the model's chat template, and the model has none " +
        '(its tokenizer_config.json has no "chat_template"): train a chat/instruct model folder that has one, ' +
        'or write the rows as {"prompt": "...", "completion": "..."} text',
    );
  }
  try {
    return tokenizeChat(tokenizer.chat, messages, trainFrom, assistantOnly);
  } catch (e) {
    if (e instanceof RangeError) return e.message;
    throw e;
  }
}

function typeName(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}
