// CSV files with named columns as datasets: a text column, or a prompt column
// and a completion column (E2E NLG: `mr` -> `ref`), and the multi-reference
// grouping that evaluation (BLEU) needs.

import { readFile } from 'node:fs/promises';
import type { CsvColumns } from './columns.js';

export type { CsvColumns } from './columns.js';
import { parseCsv, type CsvRecord } from './csv.js';
import { DatasetError, ProblemLog, type BadLinePolicy, type ReadResult } from './problems.js';
import { compileTemplate, templateFields } from './template.js';
import {
  tokenizePromptCompletion,
  tokenizeText,
  type LossScope,
  type TextTokenizer,
  type TokenizedExample,
} from './tokenizer.js';

/** A CSV file as its header and data records. */
export interface CsvTable {
  file: string;
  header: string[];
  rows: CsvRecord[];
}

/** Reads and parses a CSV file; the first record is the header. */
export async function readCsvTable(file: string): Promise<CsvTable> {
  const [header, ...rows] = parseCsv(await readFile(file, 'utf8'), file);
  if (header === undefined) throw new DatasetError(`${file}: empty CSV file, no header row`);
  return { file, header: header.fields, rows };
}

/** The index of a column, or a DatasetError naming it and the columns present. */
export function columnIndex(table: CsvTable, name: string, role = 'column'): number {
  const index = table.header.indexOf(name);
  if (index < 0) {
    throw new DatasetError(
      `${table.file}: no ${role} "${name}"; the columns present are: ` +
        table.header.map((h) => JSON.stringify(h)).join(', '),
    );
  }
  return index;
}

/**
 * Reads a CSV file into examples: text (loss on every token) or prompt +
 * completion (loss on the completion and its EOS, or with `loss.completionOnly`
 * false on every token). A record with the wrong
 * number of fields, malformed quoting or an empty text/completion is a bad
 * line (see BadLinePolicy); a missing column is an error before any row.
 */
export async function readCsv(
  file: string,
  tokenizer: TextTokenizer,
  options: { columns: CsvColumns; loss?: LossScope } & BadLinePolicy,
): Promise<ReadResult> {
  const table = await readCsvTable(file);
  const completionOnly = options.loss?.completionOnly ?? true;
  const make = exampleMaker(table, tokenizer, options.columns, completionOnly);
  const log = new ProblemLog(file, options);
  const examples: TokenizedExample[] = [];
  const lines: number[] = [];
  forEachRow(table, log, (values, line) => {
    const example = make(values);
    if (typeof example === 'string') log.reject(line, example);
    else {
      examples.push(example);
      lines.push(line);
    }
  });
  const prompted = 'promptColumn' in options.columns;
  return { ...log.finish(examples.length), examples, lines, prompted };
}

/** Evaluation data: every reference for one prompt. */
export interface ReferenceGroup {
  prompt: string;
  references: string[];
}

/** Groups (prompt, reference) pairs by prompt, groups and references in first-seen order. */
export function groupReferences(
  pairs: Iterable<{ prompt: string; reference: string }>,
): ReferenceGroup[] {
  const groups = new Map<string, string[]>();
  for (const { prompt, reference } of pairs) {
    const refs = groups.get(prompt);
    if (refs === undefined) groups.set(prompt, [reference]);
    else refs.push(reference);
  }
  return [...groups].map(([prompt, references]) => ({ prompt, references }));
}

/**
 * Reads a CSV file's rows grouped by the prompt column's raw value (E2E: the
 * `mr`), for multi-reference metrics. Render a prompt template on
 * `group.prompt` with renderTemplate. Bad lines as in readCsv.
 */
export async function readReferenceGroups(
  file: string,
  options: { promptColumn: string; referenceColumn: string } & BadLinePolicy,
): Promise<ReferenceGroup[]> {
  const table = await readCsvTable(file);
  const p = columnIndex(table, options.promptColumn, 'prompt column');
  const r = columnIndex(table, options.referenceColumn, 'reference column');
  const log = new ProblemLog(file, options);
  const pairs: { prompt: string; reference: string }[] = [];
  forEachRow(table, log, (values, line) => {
    const reference = values[r] as string;
    if (reference === '') log.reject(line, `empty reference column "${options.referenceColumn}"`);
    else pairs.push({ prompt: values[p] as string, reference });
  });
  log.finish(pairs.length);
  return groupReferences(pairs);
}

/** Calls `visit` on each well-formed record; counts every record and rejects malformed ones. */
function forEachRow(
  table: CsvTable,
  log: ProblemLog,
  visit: (values: string[], line: number) => void,
): void {
  const width = table.header.length;
  for (const row of table.rows) {
    log.record();
    if (row.error !== undefined) {
      log.reject(row.line, row.error);
    } else if (row.fields.length !== width) {
      log.reject(
        row.line,
        `expected ${width} fields (${table.header.join(', ')}), found ${row.fields.length}`,
      );
    } else {
      visit(row.fields, row.line);
    }
  }
}

/** Resolves the columns once; the returned function gives an example or what is wrong. */
function exampleMaker(
  table: CsvTable,
  tokenizer: TextTokenizer,
  columns: CsvColumns,
  completionOnly: boolean,
): (values: string[]) => TokenizedExample | string {
  if ('textColumn' in columns) {
    const t = columnIndex(table, columns.textColumn, 'text column');
    return (values) => {
      const text = values[t] as string;
      return text === ''
        ? `empty text column "${columns.textColumn}"`
        : tokenizeText(tokenizer, text);
    };
  }
  const p = columnIndex(table, columns.promptColumn, 'prompt column');
  const c = columnIndex(table, columns.completionColumn, 'completion column');
  let prompt = (values: readonly string[]) => values[p] as string;
  if (columns.promptTemplate !== undefined) {
    for (const name of templateFields(columns.promptTemplate)) {
      columnIndex(table, name, 'template column');
    }
    prompt = compileTemplate(columns.promptTemplate, table.header);
  }
  return (values) => {
    const completion = values[c] as string;
    if (completion === '') return `empty completion column "${columns.completionColumn}"`;
    return tokenizePromptCompletion(tokenizer, prompt(values), completion, completionOnly);
  };
}
