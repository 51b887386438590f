import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  IGNORE_INDEX,
  datasetFormat,
  readDataset,
  readJsonl,
  readText,
} from '../src/index.js';
import { bytes, enc, tempFiles } from './helpers.js';

const file = tempFiles();
const EOS = bytes.eosId;

describe('readJsonl', () => {
  it('reads text, prompt/completion and pre-tokenized lines', async () => {
    const path = await file(
      'mixed.jsonl',
      [
        JSON.stringify({ text: 'hi' }),
        '',
        '   ',
        JSON.stringify({ prompt: 'ab', completion: 'c', id: 7 }),
        JSON.stringify({ input_ids: [1, 2, 3], labels: [-100, 2, 3] }),
        JSON.stringify({ input_ids: [4, 5] }),
      ].join('\r\n') + '\r\n',
    );
    const result = await readJsonl(path, bytes);
    expect(result.records).toBe(4); // blank lines are not records
    expect(result.badRecords).toBe(0);
    const [text, pc, pre, bare] = result.examples;
    expect(Array.from(text!.ids)).toEqual([...enc('hi'), EOS]);
    expect(Array.from(text!.labels)).toEqual([...enc('hi'), EOS]);
    expect(Array.from(pc!.ids)).toEqual([...enc('ab'), ...enc('c'), EOS]);
    expect(Array.from(pc!.labels)).toEqual([IGNORE_INDEX, IGNORE_INDEX, ...enc('c'), EOS]);
    expect(Array.from(pre!.ids)).toEqual([1, 2, 3]);
    expect(Array.from(pre!.labels)).toEqual([-100, 2, 3]);
    expect(Array.from(bare!.labels)).toEqual([4, 5]);
  });

  it("puts the tokenizer's BOS (Llama 2's <s>) before every text and prompt, masked in prompts", async () => {
    const BOS = 7;
    const withBos = { ...bytes, bosId: BOS };
    const path = await file(
      'bos.jsonl',
      [JSON.stringify({ text: 'hi' }), JSON.stringify({ prompt: 'ab', completion: 'c' })].join(
        '\n',
      ),
    );
    const [text, pc] = (await readJsonl(path, withBos)).examples;
    expect(Array.from(text!.ids)).toEqual([BOS, ...enc('hi'), EOS]);
    expect(Array.from(text!.labels)).toEqual([BOS, ...enc('hi'), EOS]);
    expect(Array.from(pc!.ids)).toEqual([BOS, ...enc('ab'), ...enc('c'), EOS]);
    expect(Array.from(pc!.labels)).toEqual([
      IGNORE_INDEX,
      IGNORE_INDEX,
      IGNORE_INDEX,
      ...enc('c'),
      EOS,
    ]);
  });

  it('masks exactly the prompt tokens, tokenizing prompt and completion separately', async () => {
    const prompt = 'name[Été]\n';
    const path = await file('pc.jsonl', JSON.stringify({ prompt, completion: 'Yes.' }));
    const [ex] = (await readJsonl(path, bytes)).examples;
    const masked = Array.from(ex!.labels).filter((l) => l === IGNORE_INDEX).length;
    expect(masked).toBe(enc(prompt).length);
    expect(ex!.labels[masked]).toBe(enc('Yes.')[0]);
    expect(ex!.labels.at(-1)).toBe(EOS);
  });

  it('skips bad lines under the threshold and reports them as file:line', async () => {
    const good = Array.from({ length: 300 }, (_, i) => JSON.stringify({ text: `row ${i}` }));
    good.splice(10, 0, '{"text": ');
    good.splice(20, 0, JSON.stringify({ input_ids: [1, 999] }));
    const path = await file('few-bad.jsonl', good.join('\n'));
    const result = await readJsonl(path, bytes);
    expect(result.examples).toHaveLength(300);
    expect(result.records).toBe(302);
    expect(result.badRecords).toBe(2);
    expect(result.problems.map((p) => [p.file, p.line])).toEqual([
      [path, 11],
      [path, 21],
    ]);
    expect(result.problems[0]!.message).toMatch(/invalid JSON/);
    expect(result.problems[1]!.message).toMatch(/"input_ids"\[1\] = 999/);
  });

  it('fails past the threshold, listing the first problems with file:line', async () => {
    const lines = Array.from({ length: 50 }, (_, i) =>
      i % 10 === 3 ? JSON.stringify({ prompt: 'p' }) : JSON.stringify({ text: 'ok' }),
    );
    const path = await file('many-bad.jsonl', lines.join('\n'));
    const error = await readJsonl(path, bytes).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatasetError);
    expect((error as DatasetError).message).toContain('5 of 50 records are bad');
    expect((error as DatasetError).message).toContain('raise maxBadLines or maxBadFraction');
    // A caller (the CLI) names its own knob.
    const named = await readJsonl(path, bytes, { raiseWith: '--max-bad-fraction' }).catch(
      (e: unknown) => e,
    );
    expect((named as DatasetError).message).toContain('(raise --max-bad-fraction to skip them)');
    expect((error as DatasetError).message).toContain(`${path}:4: "completion" must be a string`);
    expect((error as DatasetError).problems).toHaveLength(5);
    // An explicit limit lets the same file through.
    const ok = await readJsonl(path, bytes, { maxBadLines: 5 });
    expect(ok.examples).toHaveLength(45);
  });

  it('rejects lines of the wrong shape with a reason each', async () => {
    const path = await file(
      'shapes.jsonl',
      [
        '[1, 2]',
        JSON.stringify({ text: 'a', prompt: 'b', completion: 'c' }),
        JSON.stringify({ foo: 1 }),
        JSON.stringify({ text: '' }),
        JSON.stringify({ input_ids: [1, 2], labels: [1] }),
        JSON.stringify({ input_ids: [1, 2], labels: [-1, 2] }),
        JSON.stringify({ text: 'fine' }),
      ].join('\n'),
    );
    const result = await readJsonl(path, bytes, { maxBadLines: 6 });
    expect(result.examples).toHaveLength(1);
    expect(result.problems.map((p) => p.message)).toEqual([
      'expected a JSON object, found an array',
      'ambiguous: has "text" and "prompt"; keep one',
      'expected a "text", "prompt"/"completion", "messages" or "input_ids" key, found "foo"',
      '"text" is empty',
      '"labels" has 1 entries but "input_ids" has 2',
      '"labels"[0] = -1 is neither -100 nor an id in [0, 257)',
    ]);
  });

  it('fails when no line is valid, even with a generous limit', async () => {
    const path = await file('none.jsonl', '{"x": 1}\n');
    await expect(readJsonl(path, bytes, { maxBadLines: 10 })).rejects.toThrow(/no valid example/);
    const empty = await file('empty.jsonl', '\n\n');
    await expect(readJsonl(empty, bytes)).rejects.toThrow(/no valid example in 0 records/);
  });
});

describe('readText', () => {
  it('reads the whole file as one document ended by EOS', async () => {
    const body = 'line one\nline two\r\n\nthird';
    const path = await file('doc.txt', '\uFEFF' + body);
    const result = await readText(path, bytes);
    expect(result.examples).toHaveLength(1);
    expect(Array.from(result.examples[0]!.ids)).toEqual([...enc(body), EOS]);
  });

  it('refuses an empty file', async () => {
    await expect(readText(await file('blank.txt', ' \n'), bytes)).rejects.toThrow(/empty/);
  });
});

describe('readDataset', () => {
  it('chooses the format by extension, with an override', async () => {
    expect(datasetFormat('a/b.JSONL')).toBe('jsonl');
    expect(datasetFormat('b.csv')).toBe('csv');
    expect(datasetFormat('b.txt')).toBe('text');
    expect(() => datasetFormat('b.parquet')).toThrow(/"\.parquet".*pass format/);
    const path = await file('data.log', JSON.stringify({ text: 'x' }));
    const asText = await readDataset(path, bytes, { format: 'text' });
    expect(asText.examples[0]!.ids).toHaveLength(enc('{"text":"x"}').length + 1);
    const asJsonl = await readDataset(path, bytes, { format: 'jsonl' });
    expect(Array.from(asJsonl.examples[0]!.ids)).toEqual([...enc('x'), EOS]);
  });

  it('reads CSV through its column options, and asks for them when missing', async () => {
    const path = await file('t.csv', 'body\nhello\n');
    await expect(readDataset(path, bytes)).rejects.toThrow(/needs its columns/);
    const r = await readDataset(path, bytes, { csv: { textColumn: 'body' } });
    expect(Array.from(r.examples[0]!.ids)).toEqual([...enc('hello'), EOS]);
  });
});
