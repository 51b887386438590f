// JSONL records read by named fields (columns.ts): a text field, or prompt
// and completion fields with a template over any field; a row whose field is
// missing, not a string or empty is a bad line saying which.
import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX, readJsonl, tokenizePromptCompletion, tokenizeText } from '../src/index.js';
import { bytes, tempFiles } from './helpers.js';

const file = tempFiles();

const rows = [
  { instruction: 'add 1 and 2', input: '', output: '3', id: 7 },
  { instruction: 'add', input: '2 and 2', output: '4' },
  { instruction: 'add', output: '5' }, // no "input": the template cannot be filled
  { instruction: 'add', input: 'x', output: 6 }, // a number
  { instruction: 'add', input: 'x', output: '' },
];

describe('readJsonl by named fields', () => {
  it('fills the prompt template from each record, trains the completion, reports bad rows', async () => {
    const path = await file('alpaca.jsonl', rows.map((r) => JSON.stringify(r)).join('\n'));
    const columns = {
      promptColumn: 'instruction',
      completionColumn: 'output',
      promptTemplate: 'Q: {instruction} {input}\nA: ',
    };
    const read = await readJsonl(path, bytes, { maxBadLines: 3 }, { columns });
    expect(read.prompted).toBe(true);
    expect(read.examples).toEqual([
      tokenizePromptCompletion(bytes, 'Q: add 1 and 2 \nA: ', '3'),
      tokenizePromptCompletion(bytes, 'Q: add 2 and 2\nA: ', '4'),
    ]);
    expect(read.examples[0]!.labels[0]).toBe(IGNORE_INDEX);
    expect(read.problems.map((p) => `${p.line}: ${p.message}`)).toEqual([
      '3: template "Q: {instruction} {input}\\nA: " uses {input}, which is not among: instruction, output',
      '4: "output" must be a string',
      '5: "output" is empty',
    ]);
  });

  it('reads a text field by its name, every token trained', async () => {
    const path = await file('named.jsonl', '{"body": "hello"}\n{"title": "x"}\n');
    const read = await readJsonl(
      path,
      bytes,
      { maxBadLines: 1 },
      { columns: { textColumn: 'body' } },
    );
    expect(read.prompted).toBe(false);
    expect(read.examples).toEqual([tokenizeText(bytes, 'hello')]);
    expect(read.problems[0]!.message).toBe('no field "body" (fields: "title")');
  });
});
