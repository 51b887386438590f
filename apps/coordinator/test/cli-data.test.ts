// Datasets as users bring them: a broken line among good ones, a file with
// nothing usable, a missing file, the same prompt/completion pairs as JSONL
// and as CSV, and JSONL read by named fields (Alpaca rows, a text field).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SEQ_LEN,
  ensureBuilt,
  evalJson,
  initTinyModel,
  lorafleet,
  makeTempDir,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let base: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('data');
  base = await initTinyModel(dir, 'base');
}, 300_000);

afterAll(() => removeDir(dir));

const trainOn = (data: string, out: string) =>
  lorafleet([
    'train',
    ...['--model', base, '--data', data, '--out', join(dir!, out)],
    ...['--steps', '2', '--seq-len', SEQ_LEN],
  ]);

describe.concurrent('bad training data', () => {
  it('skips one broken line among 200 and warns with file:line', async () => {
    const good = Array.from({ length: 200 }, (_, i) => JSON.stringify({ text: `line ${i} abc` }));
    good.splice(100, 0, '{"text": "unterminated');
    const data = join(dir!, 'one-bad.jsonl');
    await writeFile(data, good.join('\n') + '\n');
    const { code, stdout, stderr } = await trainOn(data, 'one-bad');
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(new RegExp(`^warning: ${data}:101: invalid JSON`, 'm'));
    expect(stdout).toContain('200 examples');
    expect(stdout).toContain('1 bad records skipped');
  });

  it('fails with exit 1 when no line is usable, listing the bad lines', async () => {
    const data = join(dir!, 'all-bad.jsonl');
    await writeFile(data, '{nope\n{"txet": "wrong field"}\nnot json at all\n');
    const { code, stderr } = await trainOn(data, 'all-bad');
    expect(code).toBe(1);
    expect(stderr).toContain(`lorafleet train: ${data}: 3 of 3 records are bad`);
    for (const line of [1, 2, 3]) expect(stderr).toContain(`${data}:${line}: `);
  });

  it('stops past --max-bad-fraction (default 1%), naming it; a higher one trains over 2 workers', async () => {
    const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `line ${i} abc` }));
    lines.splice(5, 0, '{"txt": "a misspelt key"}');
    lines.splice(12, 0, '{broken');
    const data = join(dir!, 'some-bad.jsonl');
    await writeFile(data, lines.join('\n') + '\n');
    const stopped = await trainOn(data, 'some-bad');
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toContain(
      `${data}: 2 of 22 records are bad, more than the 0 allowed (raise --max-bad-fraction to skip them)`,
    );
    const { code, stdout, stderr } = await lorafleet([
      'train',
      ...['--model', base, '--data', data, '--out', join(dir!, 'some-bad-allowed')],
      ...['--steps', '2', '--seq-len', SEQ_LEN, '--max-bad-fraction', '0.1', '--workers', '2'],
    ]);
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(new RegExp(`^warning: ${data}:6: expected a "text"`, 'm'));
    expect(stdout).toContain('2 bad records skipped');
  });

  it('fails naming the path when --data does not exist', async () => {
    const data = join(dir!, 'no-such-file.jsonl');
    const { code, stderr } = await trainOn(data, 'missing');
    expect(code).toBe(1);
    expect(stderr).toContain(`--data ${data}: no such file`);
  });
});

describe.concurrent('prompt/completion data', () => {
  const pairs = Array.from({ length: 30 }, (_, i) => ({
    prompt: `Q: ${i} + 1? A:`,
    completion: ` ${i + 1}.`,
  }));

  it('counts loss on completions only, the same from JSONL and from CSV columns', async () => {
    const jsonl = await writeJsonl(join(dir!, 'pairs.jsonl'), pairs);
    const csv = join(dir!, 'pairs.csv');
    const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
    await writeFile(
      csv,
      ['question,answer', ...pairs.map((p) => `${quote(p.prompt)},${quote(p.completion)}`)].join(
        '\n',
      ) + '\n',
    );
    const common = ['--model', base, '--seq-len', SEQ_LEN];
    const [fromJsonl, fromCsv] = await Promise.all([
      evalJson([...common, '--data', jsonl]),
      evalJson([
        ...common,
        '--data',
        csv,
        '--prompt-column',
        'question',
        '--completion-column',
        'answer',
      ]),
    ]);
    // Byte tokenizer: one token per completion byte, plus the EOS that ends each example.
    const completionTokens = pairs.reduce((n, p) => n + p.completion.length + 1, 0);
    expect(fromJsonl.tokens).toBe(completionTokens);
    expect(fromJsonl.rows).toBe(pairs.length); // padded: one example per row
    expect(fromCsv).toEqual(fromJsonl);
  });

  it("reads JSONL by named fields: TRL's dataset_text_field, Alpaca rows through a prompt template", async () => {
    const common = ['--model', base, '--seq-len', '64'];
    const template = '# Q\n{instruction}\n{input}\n# A\n';
    const alpaca = pairs.map((p, i) => ({
      ...{ instruction: p.prompt, input: i % 2 === 0 ? '' : `(row ${i})` },
      ...{ output: p.completion, id: i },
    }));
    const rendered = alpaca.map((a) => ({
      prompt: `# Q\n${a.instruction}\n${a.input}\n# A\n`,
      completion: a.output,
    }));
    const [alpacaFile, renderedFile, named] = await Promise.all([
      writeJsonl(join(dir!, 'alpaca.jsonl'), alpaca),
      writeJsonl(join(dir!, 'rendered.jsonl'), rendered),
      writeJsonl(
        join(dir!, 'named-text.jsonl'),
        pairs.map((p) => ({ content: p.prompt + p.completion })),
      ),
    ]);
    const fields = ['--prompt-column', 'instruction', '--completion-column', 'output'];
    const [fromFields, fromRendered] = await Promise.all([
      evalJson([...common, '--data', alpacaFile, ...fields, '--prompt-template', template]),
      evalJson([...common, '--data', renderedFile]),
    ]);
    expect(fromFields).toEqual(fromRendered);
    expect(fromFields.tokens).toBe(pairs.reduce((n, p) => n + p.completion.length + 1, 0));
    // A text field by another name: every token trained, as {"text"} rows.
    const texts = await writeJsonl(
      join(dir!, 'texts.jsonl'),
      pairs.map((p) => ({ text: p.prompt + p.completion })),
    );
    const [byName, asText] = await Promise.all([
      evalJson([...common, '--data', named, '--text-column', 'content']),
      evalJson([...common, '--data', texts]),
    ]);
    expect(byName).toEqual(asText);
    // A field missing from a row is that row's problem, named by file:line.
    const missing = await lorafleet([
      'eval',
      ...[...common, '--data', alpacaFile, '--prompt-column', 'instruction'],
      ...['--completion-column', 'response'],
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      `${alpacaFile}:1: no field "response" (fields: "instruction", "input", "output", "id")`,
    );
    // A text file is one document: eval refuses the field options as train does.
    const document = join(dir!, 'document.txt');
    await writeFile(document, 'one document\n');
    const txt = await lorafleet(['eval', ...common, '--data', document, '--text-column', 'body']);
    expect(txt.code).toBe(2);
    expect(txt.stderr).toContain(
      'eval: --text-column and --data contradict each other: --text-column is for CSV and JSONL files',
    );
  });
});
