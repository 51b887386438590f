// One JSONL line to a preference pair, in TRL's four preference formats:
//   {"prompt": "...", "chosen": "...", "rejected": "..."}        standard, text
//   {"chosen": "...", "rejected": "..."}                         implicit prompt: their common start
//   {"prompt": [messages], "chosen": [messages], "rejected": [messages]}   conversational
//   {"chosen": [messages], "rejected": [messages]}               conversational, implicit prompt
// Text sides are tokenized as prompt/completion examples; conversations are
// rendered with the model's chat template (chat.ts), loss on the response's
// assistant turns.
import { type ChatMessage, parseMessages } from './chat.js';
import { chatExamples, parseJsonObject } from './jsonl.js';
import {
  tokenizePromptCompletion,
  type TextTokenizer,
  type TokenizedExample,
} from './tokenizer.js';

/** One preference: the prompt followed by the preferred and by the dispreferred response. */
export interface PreferencePair {
  chosen: TokenizedExample;
  rejected: TokenizedExample;
}

/** One line to a pair, or a message saying what is wrong with it. */
export function parsePreferenceLine(
  line: string,
  tokenizer: TextTokenizer,
): PreferencePair | string {
  const o = parseJsonObject(line);
  if (typeof o === 'string') return o;
  const missing = (['chosen', 'rejected'] as const).find((k) => o[k] === undefined);
  if (missing) {
    return `expected "chosen" and "rejected" (a preference pair, "prompt" optional); "${missing}" is missing`;
  }
  const keys = (['prompt', 'chosen', 'rejected'] as const).filter((k) => k in o);
  const lists = keys.filter((k) => Array.isArray(o[k]));
  if (lists.length === 0) return textPair(tokenizer, o);
  if (lists.length < keys.length) {
    return `mixes text and message lists: ${keys.map((k) => `"${k}" is ${lists.includes(k) ? 'a list' : 'not'}`).join(', ')}; write all as text or all as messages`;
  }
  return conversationalPair(tokenizer, o);
}

function textPair(tokenizer: TextTokenizer, o: Record<string, unknown>): PreferencePair | string {
  for (const key of ['prompt', 'chosen', 'rejected'] as const) {
    const v = o[key];
    if (key === 'prompt' && v === undefined) continue;
    if (typeof v !== 'string') return `"${key}" must be a string, found ${typeName(v)}`;
    if (key !== 'prompt' && v === '') return `"${key}" is empty`;
  }
  const [prompt, chosen, rejected] =
    typeof o.prompt === 'string'
      ? [o.prompt, o.chosen as string, o.rejected as string]
      : implicitPrompt(o.chosen as string, o.rejected as string);
  if (chosen === rejected) return '"chosen" and "rejected" are the same response';
  if (chosen === '' || rejected === '') return 'one response is the start of the other';
  return {
    chosen: tokenizePromptCompletion(tokenizer, prompt, chosen),
    rejected: tokenizePromptCompletion(tokenizer, prompt, rejected),
  };
}

/**
 * TRL's extract_prompt for text: the prompt is the two strings' common start,
 * less a space it ends with (which then starts each response).
 */
export function implicitPrompt(chosen: string, rejected: string): [string, string, string] {
  let i = 0;
  while (i < chosen.length && i < rejected.length && chosen[i] === rejected[i]) i++;
  if (i > 0 && i < Math.min(chosen.length, rejected.length) && chosen[i - 1] === ' ') i--;
  return [chosen.slice(0, i), chosen.slice(i), rejected.slice(i)];
}

function conversationalPair(
  tokenizer: TextTokenizer,
  o: Record<string, unknown>,
): PreferencePair | string {
  const parsed = (['chosen', 'rejected'] as const).map((k) => parseMessages(o[k], k));
  const prompt = o.prompt === undefined ? null : parseMessages(o.prompt, 'prompt');
  for (const p of [prompt, ...parsed]) if (typeof p === 'string') return p;
  let [head, chosen, rejected] = [prompt, ...parsed] as [
    ChatMessage[] | null,
    ChatMessage[],
    ChatMessage[],
  ];
  if (head === null) {
    // TRL's implicit conversational prompt: the messages both sides start with.
    let k = 0;
    const same = (a?: ChatMessage, b?: ChatMessage) =>
      a !== undefined && b !== undefined && a.role === b.role && a.content === b.content;
    while (same(chosen[k], rejected[k])) k++;
    if (k === 0)
      return '"chosen" and "rejected" share no first message to be the prompt: give "prompt"';
    [head, chosen, rejected] = [chosen.slice(0, k), chosen.slice(k), rejected.slice(k)];
    if (chosen.length === 0 || rejected.length === 0)
      return 'one conversation is the start of the other';
  }
  const side = (messages: ChatMessage[], key: string): TokenizedExample | string => {
    const examples = chatExamples(tokenizer, [...head!, ...messages], head!.length);
    if (typeof examples === 'string') return `"${key}": ${examples}`;
    if (examples.length !== 1) {
      return `"${key}" has ${examples.length} assistant turns that the chat template renders apart; a preference needs one response`;
    }
    return examples[0]!;
  };
  const c = side(chosen, 'chosen');
  const r = side(rejected, 'rejected');
  if (typeof c === 'string') return c;
  if (typeof r === 'string') return r;
  return { chosen: c, rejected: r };
}

function typeName(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}
