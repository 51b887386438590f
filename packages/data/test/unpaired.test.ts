// KTO's unpaired feedback (unpaired.ts): TRL's {"prompt","completion","label"}
// lines, text or conversations, tokenized as a prompt (no loss) and a
// completion; each example in a row of 2 x T next to its KL sequence, its
// prompt with the previous example's completion within a chunk (TRL's
// cycling); bad lines named; examples that cannot train dropped.
import { describe, expect, it } from 'vitest';
import {
  IGNORE_INDEX,
  collate,
  parseUnpairedLine,
  readUnpairedJsonl,
  unpairedRows,
} from '../src/index.js';
import { bytes, chatBytes, enc, tempFiles } from './helpers.js';

const file = tempFiles();
const EOS = bytes.eosId;
const line = (prompt: unknown, completion: unknown, label: unknown) =>
  JSON.stringify({ prompt, completion, label });
const parsed = (l: string, tokenizer = bytes) => {
  const e = parseUnpairedLine(l, tokenizer);
  if (typeof e === 'string') throw new Error(e);
  return e;
};
/** The tokens of a side of a row that carry a label. */
const trained = (ids: Int32Array, labels: Int32Array) =>
  Array.from(ids).filter((_, i) => labels[i] !== IGNORE_INDEX);

describe("KTO's unpaired examples", () => {
  it('a line is a prompt (no loss), its completion and EOS (the loss), and its label', () => {
    const e = parsed(line('Q:', 'yes', true));
    expect(Array.from(e.example.ids)).toEqual([...enc('Q:yes'), EOS]);
    expect(Array.from(e.example.labels)).toEqual([-100, -100, ...enc('yes'), EOS]);
    expect(e).toMatchObject({ promptLength: 2, desirable: true });
    expect(parsed(line('Q:', 'no', false)).desirable).toBe(false);
  });

  it('says what is wrong with a line', () => {
    const why = (l: string) => parseUnpairedLine(l, bytes);
    expect(why('{"prompt": "a", "completion": "b"}')).toBe(
      'expected "prompt", "completion" and "label" (KTO\'s unpaired feedback, TRL\'s format); "label" is missing',
    );
    expect(why(line('a', 'b', 'yes'))).toBe(
      '"label" must be true (a desirable completion) or false (an undesirable one), found "yes"',
    );
    expect(why(line('a', '', true))).toBe('"completion" is empty');
    expect(why('{"prompt": "a", "chosen": "b", "rejected": "c"}')).toContain(
      'a preference pair ("chosen", "rejected"), where this reads one line of unpaired feedback',
    );
    expect(why(line('a', 3, true))).toBe('"completion" must be a string, found number');
    expect(why(line([{ role: 'user', content: 'a' }], 'b', true))).toContain(
      'mixes text and message lists',
    );
  });

  it("conversations are rendered with the chat template, loss on the completion's assistant turn", () => {
    const user = { role: 'user', content: 'hi?' };
    const e = parsed(line([user], [{ role: 'assistant', content: 'yes' }], true), chatBytes);
    expect(Array.from(e.example.ids)).toEqual(enc('user: hi?\nassistant: yes\n'));
    expect(trained(e.example.ids, e.example.labels)).toEqual(enc('yes\n'));
    expect(e.promptLength).toBe(enc('user: hi?\nassistant: ').length);
  });

  it("rows hold [completion | prompt + the previous example's completion], cycled within each chunk", () => {
    const examples = ['a', 'b', 'c', 'd', 'e'].map((c, i) =>
      parsed(line(`Q${i}:`, c, i % 2 === 0)),
    );
    const { rows, rowLines, dropped } = unpairedRows(examples, [1, 2, 3, 4, 5], 8, 0, 2);
    expect(dropped).toEqual([]);
    expect(Array.from(rowLines)).toEqual([1, 2, 3, 4, 5]);
    const half = (r: number, h: 0 | 1) => {
      const at = (x: Int32Array) => x.subarray(h * 8, (h + 1) * 8);
      return { ids: at(rows[r]!.ids), labels: at(rows[r]!.labels) };
    };
    const text = (ids: number[]) => String.fromCharCode(...ids.filter((x) => x !== 0 && x !== EOS));
    // Chunks of 2: [0, 1], [2, 3], [4]: each takes the other's completion; the last its own.
    const kl = [1, 0, 3, 2, 4];
    for (let r = 0; r < 5; r++) {
      const mine = half(r, 0);
      expect(text(Array.from(mine.ids))).toBe(`Q${r}:${'abcde'[r]}`);
      const other = half(r, 1);
      expect(text(Array.from(other.ids))).toBe(`Q${r}:${'abcde'[kl[r]!]}`);
      expect(trained(other.ids, other.labels)).toEqual([...enc('abcde'[kl[r]!]!), EOS]);
    }
    expect(rows.map((r) => r.desirable)).toEqual([true, false, true, false, true]);
    expect(Array.from(collate(rows, 16).desirable!)).toEqual([1, 0, 1, 0, 1]);
    expect(() => unpairedRows(examples, [], 8, 0, 0)).toThrow('chunk 0 must be >= 1');
  });

  it('drops an example whose prompt fills the context, before the KL cycling', () => {
    const examples = [parsed(line('Q:', 'a', true)), parsed(line('a long prompt:', 'b', false))];
    const made = unpairedRows(examples, [1, 2], 6, 0, 2);
    expect(made.rows).toHaveLength(1);
    expect(made.dropped).toEqual([
      { line: 2, message: 'the completion has no token within --seq-len 6 after its prompt' },
    ]);
    // Alone in its chunk, the kept example's KL completion is its own.
    expect(Array.from(made.rows[0]!.ids.subarray(6))).toEqual(
      Array.from(made.rows[0]!.ids.subarray(0, 6)),
    );
    expect(() => unpairedRows(examples.slice(1), [2], 6, 0, 2)).toThrow('none of the 1 examples');
  });

  it('reads a file, naming bad lines by file:line', async () => {
    const path = await file(
      'kto.jsonl',
      [
        line('Q:', 'yes', true),
        '{"prompt": "Q:", "completion": "x"}',
        line('Q:', 'no', false),
      ].join('\n'),
    );
    const read = await readUnpairedJsonl(path, bytes, { maxBadFraction: 0.5 });
    expect(read.examples.map((e) => e.desirable)).toEqual([true, false]);
    expect(read.lines).toEqual([1, 3]);
    expect(read.badRecords).toBe(1);
    expect(read.problems[0]).toMatchObject({ line: 2 });
  });

  it("unpairs a file of preference pairs as TRL's KTOTrainer: per block of 1000, the chosen, then the rejected", async () => {
    const pairs = Array.from({ length: 1003 }, (_, i) =>
      JSON.stringify({ prompt: `Q${i}:`, chosen: `good ${i}`, rejected: `bad ${i}` }),
    );
    const read = await readUnpairedJsonl(await file('pairs.jsonl', pairs.join('\n')), bytes);
    expect(read.pairs).toBe(1003);
    expect(read.examples).toHaveLength(2006);
    const text = (e: (typeof read.examples)[number]) =>
      String.fromCharCode(...Array.from(e.example.ids).filter((id) => id !== EOS));
    expect(text(read.examples[0]!)).toBe('Q0:good 0');
    expect(text(read.examples[999]!)).toBe('Q999:good 999');
    expect(text(read.examples[1000]!)).toBe('Q0:bad 0');
    expect(text(read.examples[2000]!)).toBe('Q1000:good 1000');
    expect(text(read.examples[2005]!)).toBe('Q1002:bad 1002');
    expect(read.examples.slice(0, 1000).every((e) => e.desirable)).toBe(true);
    expect(read.examples.slice(1000, 2000).some((e) => e.desirable)).toBe(false);
    expect([read.lines[0], read.lines[1000], read.lines[2005]]).toEqual([1, 1, 1003]);
    expect(read.examples[0]!.promptLength).toBe(3);
  });

  it('extracts an implicit prompt, and refuses a file mixing pairs and unpaired feedback', async () => {
    const implicit = JSON.stringify({ chosen: 'Q: yes', rejected: 'Q: no' });
    const read = await readUnpairedJsonl(await file('implicit.jsonl', implicit), bytes);
    expect(read.examples.map((e) => e.promptLength)).toEqual([2, 2]); // "Q:", then " yes" and " no"
    const mixed = [implicit, line('Q:', 'yes', true)].join('\n');
    await expect(readUnpairedJsonl(await file('mixed.jsonl', mixed), bytes)).rejects.toThrow(
      'line 1 is a preference pair and line 2 unpaired feedback; a file holds one kind',
    );
  });
});
