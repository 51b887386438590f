import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  IGNORE_INDEX,
  parseCsv,
  readCsv,
  readCsvTable,
  readReferenceGroups,
  groupReferences,
  renderTemplate,
} from '../src/index.js';
import { bytes, enc, tempFiles } from './helpers.js';

const file = tempFiles();
const E2E = '/work/shared/data/e2e';

const rows = (text: string) => parseCsv(text).map((r) => r.fields);

describe('parseCsv (RFC 4180)', () => {
  it('splits plain fields and ignores a final line break', () => {
    expect(rows('a,b,c\n1,2,3\n')).toEqual([
      ['a', 'b', 'c'],
      ['1', '2', '3'],
    ]);
    expect(rows('a,b,\n')).toEqual([['a', 'b', '']]);
  });

  it('reads quoted fields with commas, "" escapes and line breaks inside', () => {
    const text = 'x,y\n"a, b","say ""hi"""\n"multi\nline\r\nfield",z\n';
    expect(rows(text)).toEqual([
      ['x', 'y'],
      ['a, b', 'say "hi"'],
      ['multi\nline\r\nfield', 'z'],
    ]);
  });

  it('accepts CRLF, lone CR and a BOM, and numbers lines across quoted breaks', () => {
    const records = parseCsv('\uFEFFa,b\r\n"1\r\n2",3\r\n\r\n4,5\r6,7');
    expect(records.map((r) => r.fields)).toEqual([
      ['a', 'b'],
      ['1\r\n2', '3'],
      ['4', '5'],
      ['6', '7'],
    ]);
    expect(records.map((r) => r.line)).toEqual([1, 2, 5, 6]);
  });

  it('keeps a quoted empty line as a record but drops blank lines', () => {
    expect(rows('a\n\n""\n\n')).toEqual([['a'], ['']]);
  });

  it('flags text after a closing quote, and throws on a quote that never closes', () => {
    const [, bad, after] = parseCsv('a,b\n"x"y,2\n3,4');
    expect(bad!.error).toMatch(/after the closing quote of field 1/);
    expect(after!.fields).toEqual(['3', '4']);
    expect(() => parseCsv('a,b\n1,2\n3,"oops\n5,6\n', 'f.csv')).toThrow(
      /f\.csv:3: quoted field never closes/,
    );
  });
});

describe('readCsv', () => {
  it('masks the prompt column and trains on the completion + EOS, with a template', async () => {
    const path = await file('pc.csv', 'mr,ref\r\n"name[X], food[Thai]","X, ""the"" place."\r\n');
    const plain = await readCsv(path, bytes, {
      columns: { promptColumn: 'mr', completionColumn: 'ref' },
    });
    const prompt = 'name[X], food[Thai]';
    const completion = 'X, "the" place.';
    expect(Array.from(plain.examples[0]!.ids)).toEqual([...enc(prompt), ...enc(completion), 256]);
    const templated = await readCsv(path, bytes, {
      columns: { promptColumn: 'mr', completionColumn: 'ref', promptTemplate: 'MR: {mr}\n' },
    });
    const ex = templated.examples[0]!;
    const promptLen = enc(`MR: ${prompt}\n`).length;
    expect(Array.from(ex.labels.subarray(0, promptLen)).every((l) => l === IGNORE_INDEX)).toBe(
      true,
    );
    expect(Array.from(ex.labels.subarray(promptLen))).toEqual([...enc(completion), 256]);
    expect(templated.prompted).toBe(true);
    const whole = await readCsv(path, bytes, {
      columns: { promptColumn: 'mr', completionColumn: 'ref', promptTemplate: 'MR: {mr}\n' },
      loss: { completionOnly: false, assistantOnly: true },
    });
    expect(whole.examples[0]!.ids).toEqual(ex.ids);
    expect(whole.examples[0]!.labels).toEqual(ex.ids);
  });

  it('names the missing column and the columns present', async () => {
    const path = await file('cols.csv', 'mr,ref\na,b\n');
    await expect(
      readCsv(path, bytes, { columns: { promptColumn: 'mr', completionColumn: 'target' } }),
    ).rejects.toThrow(/no completion column "target"; the columns present are: "mr", "ref"/);
    await expect(
      readCsv(path, bytes, {
        columns: { promptColumn: 'mr', completionColumn: 'ref', promptTemplate: '{mr} {area}' },
      }),
    ).rejects.toThrow(/no template column "area"/);
  });

  it('skips records with the wrong field count or empty completion, with file:line', async () => {
    const lines = ['mr,ref'];
    for (let i = 0; i < 200; i++) lines.push(`m${i},r${i}`);
    lines[50] = 'm,r,extra';
    lines[120] = '"multi\nline",';
    const path = await file('bad.csv', lines.join('\n'));
    const policy = { maxBadLines: 2 };
    const result = await readCsv(path, bytes, {
      ...policy,
      columns: { promptColumn: 'mr', completionColumn: 'ref' },
    });
    expect(result.examples).toHaveLength(198);
    expect(result.problems.map((p) => `${p.line}: ${p.message}`)).toEqual([
      '51: expected 2 fields (mr, ref), found 3',
      '121: empty completion column "ref"',
    ]);
    // 2 of 200 is within the default 1%; one allowed bad line is not enough.
    await expect(
      readCsv(path, bytes, { columns: { promptColumn: 'mr', completionColumn: 'ref' } }),
    ).resolves.toMatchObject({ badRecords: 2 });
    await expect(
      readCsv(path, bytes, {
        maxBadLines: 1,
        columns: { promptColumn: 'mr', completionColumn: 'ref' },
      }),
    ).rejects.toThrow(DatasetError);
  });
});

describe('E2E NLG files', () => {
  it('reads the devset: 4672 rows, 547 MRs, every row with a masked prompt', async () => {
    const table = await readCsvTable(`${E2E}/devset.csv`);
    expect(table.header).toEqual(['mr', 'ref']);
    expect(table.rows).toHaveLength(4672);
    const result = await readCsv(`${E2E}/devset.csv`, bytes, {
      columns: { promptColumn: 'mr', completionColumn: 'ref', promptTemplate: '{mr}\n' },
    });
    expect(result.examples).toHaveLength(4672);
    expect(result.badRecords).toBe(0);
    const first = result.examples[0]!;
    const mr = 'name[Alimentum], area[city centre], familyFriendly[no]\n';
    expect(first.labels.indexOf(IGNORE_INDEX)).toBe(0);
    expect(first.labels.lastIndexOf(IGNORE_INDEX)).toBe(enc(mr).length - 1);
    const groups = await readReferenceGroups(`${E2E}/devset.csv`, {
      promptColumn: 'mr',
      referenceColumn: 'ref',
    });
    expect(groups.length).toBe(547);
    expect(groups.reduce((n, g) => n + g.references.length, 0)).toBe(4672);
    expect(groups[0]!.prompt).toBe(mr.trimEnd());
    expect(groups[0]!.references[0]).toBe(
      'There is a place in the city centre, Alimentum, that is not family-friendly.',
    );
  });

  it('groups the test set with references (LF line ends) by MR', async () => {
    const groups = await readReferenceGroups(`${E2E}/testset_w_refs.csv`, {
      promptColumn: 'mr',
      referenceColumn: 'ref',
    });
    expect(groups.length).toBe(630);
    expect(groups.reduce((n, g) => n + g.references.length, 0)).toBe(4693);
  });
});

describe('groupReferences and templates', () => {
  it('groups in first-seen order, keeping reference order', () => {
    const groups = groupReferences([
      { prompt: 'b', reference: '1' },
      { prompt: 'a', reference: '2' },
      { prompt: 'b', reference: '3' },
    ]);
    expect(groups).toEqual([
      { prompt: 'b', references: ['1', '3'] },
      { prompt: 'a', references: ['2'] },
    ]);
  });

  it('renders placeholders and literal braces, and rejects unknown names', () => {
    expect(renderTemplate('{{x}} {mr} -> ', { mr: 'A' })).toBe('{x} A -> ');
    expect(() => renderTemplate('{mr} {ref}', { mr: 'A' })).toThrow(/uses \{ref\}/);
    expect(() => renderTemplate('{constructor}', { mr: 'A' })).toThrow(/uses \{constructor\}/);
    expect(() => renderTemplate('{mr', { mr: 'A' })).toThrow(/unmatched '\{'/);
  });
});
