/** Hugging Face model-folder files, parsed with errors that name the file and line. */
import { readFile } from 'node:fs/promises';

export interface ParsedMerges {
  pairs: [string, string][];
  /** 1-based line in merges.txt of each pair, for error messages. */
  lines: number[];
}

/** A JSON object file, or undefined when the file does not exist. */
export async function readJsonObjectIfExists(
  path: string,
): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${path}: expected a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** vocab.json's values are checked by Gpt2BpeTokenizer, which knows what they mean. */
export async function readVocabJson(path: string): Promise<Record<string, number>> {
  const vocab = await readJsonObjectIfExists(path);
  if (!vocab) throw new Error(`cannot read ${path}: file does not exist`);
  return vocab as Record<string, number>;
}

/**
 * merges.txt: an optional "#version" header, then one "left right" pair per
 * line, highest priority first. Only the first line may be the header, since
 * "# #" is a legitimate merge of two '#' symbols.
 */
export function parseMergesTxt(text: string, path: string): ParsedMerges {
  const rows = text.split(/\r?\n/);
  while (rows.length > 0 && rows[rows.length - 1] === '') rows.pop();
  const pairs: [string, string][] = [];
  const lines: number[] = [];
  rows.forEach((row, i) => {
    if (i === 0 && row.startsWith('#version')) return;
    const parts = row.split(' ');
    const [left, right] = parts;
    if (parts.length !== 2 || !left || !right) {
      throw new Error(
        `${path} line ${i + 1}: expected two tokens separated by one space, got ${JSON.stringify(row)}`,
      );
    }
    pairs.push([left, right]);
    lines.push(i + 1);
  });
  return { pairs, lines };
}

export async function readMergesTxt(path: string): Promise<ParsedMerges> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  return parseMergesTxt(text, path);
}
