// Conversations ({"messages": [...]}) rendered with the model's chat template,
// trained on the assistant turns only (TRL's assistant_only_loss=True), or on
// every token of the rendering (assistantOnly false: TRL's default).
//
// Where an assistant turn starts and ends in tokens comes from rendering the
// conversation incrementally, in tokens so no character offsets are needed:
//   before = ids(render(messages[0..i), add_generation_prompt))
//   upto   = ids(render(messages[0..i]))
// The turn starts where `upto` leaves `before` and ends after its first
// control token (<|eot_id|>, <|im_end|>, </s>: the token the model must learn
// to stop with); text a template appends after it (a "\n", or the next
// header that some templates always add) is not trained.
//
// When every turn renders as a prefix of the whole conversation, the result
// is one example. Templates that render history differently from the last
// turn (Qwen3 drops earlier turns' <think> blocks) give one example per
// assistant turn instead, each as the model sees it when it answers.

import { IGNORE_INDEX, type TokenizedExample } from './tokenizer.js';

/** One turn of a conversation. */
export interface ChatMessage {
  role: string;
  content: string;
}

/**
 * What the data package needs from a model's chat template; the models
 * package's tokenizers supply it (structurally, so data never imports models).
 */
export interface ChatFormat {
  /** The template's text for `messages`; with `addGenerationPrompt`, up to where the assistant speaks. */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
  /** Ids of rendered text: the control tokens the template writes become their ids. */
  encodeRendered(text: string): number[];
  /** Whether an id is a control token. */
  isControlToken(id: number): boolean;
  /** The control tokens' text; message content holding one is refused. */
  readonly controlTokens: readonly string[];
}

/** A `messages` value checked: a non-empty array of {role, content} strings, or what is wrong. */
export function parseMessages(value: unknown, field: string): ChatMessage[] | string {
  if (!Array.isArray(value)) return `"${field}" must be an array of {"role", "content"} objects`;
  if (value.length === 0) return `"${field}" is empty`;
  const messages: ChatMessage[] = [];
  for (const [i, m] of value.entries()) {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      return `"${field}"[${i}] must be an object with "role" and "content"`;
    }
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || role === '')
      return `"${field}"[${i}].role must be a non-empty string`;
    if (typeof content !== 'string') return `"${field}"[${i}].content must be a string`;
    messages.push({ role, content });
  }
  return messages;
}

/**
 * Tokenizes a conversation, labels on the assistant turns at index
 * `trainFrom` or later, or with `assistantOnly` false on every token from
 * message `trainFrom` on. Throws a RangeError saying what is wrong with the row.
 */
export function tokenizeChat(
  format: ChatFormat,
  messages: readonly ChatMessage[],
  trainFrom = 0,
  assistantOnly = true,
): TokenizedExample[] {
  refuseControlTokens(format, messages);
  if (!assistantOnly) return [everyToken(format, messages, trainFrom)];
  const turns = messages.flatMap((m, i) => (m.role === 'assistant' && i >= trainFrom ? [i] : []));
  if (turns.length === 0) throw new RangeError('no "assistant" message to train on');
  const spans = turns.map((i) => assistantSpan(format, messages, i));
  const whole = format.encodeRendered(render(format, messages, false));
  if (spans.every((s) => commonPrefix(whole, s.ids) >= s.end)) {
    const end = Math.max(...spans.map((s) => s.end));
    return [labelled(whole.slice(0, end), spans)];
  }
  return spans.map((s) => labelled(s.ids.slice(0, s.end), [s]));
}

function refuseControlTokens(format: ChatFormat, messages: readonly ChatMessage[]): void {
  messages.forEach((m, i) => {
    const token = format.controlTokens.find((t) => m.content.includes(t));
    if (token !== undefined) {
      throw new RangeError(
        `messages[${i}].content contains the control token ${JSON.stringify(token)}, which the chat template writes itself; remove it from the data`,
      );
    }
  });
}

/**
 * The whole rendering, trained after the first `trainFrom` messages rendered
 * with the generation prompt, by their length in tokens (as TRL's
 * completion_mask: a template that renders them otherwise inside the whole
 * still cuts at that length).
 */
function everyToken(
  format: ChatFormat,
  messages: readonly ChatMessage[],
  trainFrom: number,
): TokenizedExample {
  const ids = Int32Array.from(format.encodeRendered(render(format, messages, false)));
  const start =
    trainFrom === 0
      ? 0
      : format.encodeRendered(render(format, messages.slice(0, trainFrom), true)).length;
  if (start >= ids.length)
    throw new RangeError('the chat template renders the completion as no tokens');
  const labels = ids.slice();
  labels.fill(IGNORE_INDEX, 0, start);
  return { ids, labels };
}

/** An assistant turn as the last message: its rendering and the trained token range. */
interface AssistantSpan {
  ids: number[];
  start: number;
  end: number;
}

function assistantSpan(
  format: ChatFormat,
  messages: readonly ChatMessage[],
  i: number,
): AssistantSpan {
  const before = format.encodeRendered(render(format, messages.slice(0, i), true));
  const ids = format.encodeRendered(render(format, messages.slice(0, i + 1), false));
  const start = commonPrefix(before, ids);
  let end = ids.length;
  for (let k = start; k < ids.length; k++) {
    if (format.isControlToken(ids[k] as number)) {
      end = k + 1;
      break;
    }
  }
  if (end <= start)
    throw new RangeError(`the chat template renders messages[${i}] (assistant) as no tokens`);
  return { ids, start, end };
}

/** A template error (e.g. its raise_exception on roles out of order) is this row's problem. */
function render(
  format: ChatFormat,
  messages: readonly ChatMessage[],
  addGenerationPrompt: boolean,
): string {
  try {
    return format.render(messages, addGenerationPrompt);
  } catch (e) {
    throw new RangeError(
      `the chat template refused messages[0..${messages.length}): ${(e as Error).message}`,
    );
  }
}

function labelled(ids: number[], spans: readonly AssistantSpan[]): TokenizedExample {
  const out = Int32Array.from(ids);
  const labels = new Int32Array(ids.length).fill(IGNORE_INDEX);
  for (const s of spans) labels.set(out.subarray(s.start, s.end), s.start);
  return { ids: out, labels };
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
