// An RFC 4180 CSV parser: quoted fields, "" for a quote inside quotes, commas
// and line breaks inside quotes, CRLF or LF (or a lone CR) between records, a
// UTF-8 byte order mark at the start. Lenient where real files are: a quote in
// the middle of an unquoted field is kept as a literal character.

import { DatasetError } from './problems.js';

/** One record: its fields and the 1-based line it starts on. */
export interface CsvRecord {
  line: number;
  fields: string[];
  /** Set when the record is malformed but the parser could carry on. */
  error?: string;
}

/**
 * Splits CSV text into records (the header is the first one). Blank lines are
 * dropped, as is the empty "record" after a final line break. Malformed
 * records (text after a closing quote) come back with `error` set; a quote
 * that never closes swallows the rest of the file and is a DatasetError
 * naming the line where it opened.
 */
export function parseCsv(text: string, file = '<csv>'): CsvRecord[] {
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const records: CsvRecord[] = [];
  let line = 1;
  let i = 0;

  while (i < s.length) {
    const record: CsvRecord = { line, fields: [] };
    let quoted = false;
    let atLineEnd = false;
    while (!atLineEnd) {
      let field = '';
      if (s[i] === '"') {
        quoted = true;
        const opened = line;
        i++;
        for (;;) {
          const q = s.indexOf('"', i);
          if (q < 0) {
            throw new DatasetError(
              `${file}:${opened}: quoted field never closes (a stray '"'?); ` +
                `everything after it would be one field`,
              [{ file, line: opened, message: 'unterminated quoted field' }],
            );
          }
          field += s.slice(i, q);
          line += countLineBreaks(s, i, q);
          i = q + 1;
          if (s[i] !== '"') break;
          field += '"';
          i++;
        }
        if (i < s.length && s[i] !== ',' && s[i] !== '\n' && s[i] !== '\r') {
          record.error ??= `text after the closing quote of field ${record.fields.length + 1}`;
        }
      }
      // The unquoted field, or what trails a quoted one up to the delimiter.
      let j = i;
      while (j < s.length && s[j] !== ',' && s[j] !== '\n' && s[j] !== '\r') j++;
      field += s.slice(i, j);
      record.fields.push(field);
      i = j;
      if (s[i] === ',') {
        i++;
      } else {
        atLineEnd = true;
        if (s[i] === '\r') {
          i++;
          if (s[i] === '\n') i++;
        } else if (s[i] === '\n') {
          i++;
        }
        line++;
      }
    }
    const blank = record.fields.length === 1 && record.fields[0] === '' && !quoted;
    if (!blank) records.push(record);
  }
  return records;
}

/** Line breaks (CRLF, LF or CR each count once) in s[from, to). */
function countLineBreaks(s: string, from: number, to: number): number {
  let n = 0;
  for (let k = from; k < to; k++) {
    const c = s[k];
    if (c === '\n' || (c === '\r' && s[k + 1] !== '\n')) n++;
  }
  return n;
}
