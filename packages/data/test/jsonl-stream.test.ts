// readJsonl reads its file as a stream of lines: a line (or a multi-byte
// character, a CRLF, the BOM) split across read chunks comes out whole, and a
// file larger than the longest JS string (V8: 2^29 - 24 characters, ~512 MiB)
// is read, where reading it into one string throws.
import { open } from 'node:fs/promises';
import { constants } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { readJsonl, readLines } from '../src/index.js';
import { bytes, tempFiles } from './helpers.js';

const file = tempFiles();

async function collect(lines: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of lines) out.push(line);
  return out;
}

describe('readLines', () => {
  it('gives the same lines for every chunk size, whatever they split', async () => {
    const text =
      '\uFEFF{"text":"Été 😀"}\r\n\n  \r\n{"prompt":"ä","completion":"€"}\n{"text":"last"}';
    const path = await file('split.jsonl', text);
    const expected = [
      '{"text":"Été 😀"}',
      '',
      '  ',
      '{"prompt":"ä","completion":"€"}',
      '{"text":"last"}',
    ];
    for (const chunk of [1, 2, 3, 5, 7, 64, 1 << 20]) {
      expect(await collect(readLines(path, chunk)), `chunks of ${chunk} bytes`).toEqual(expected);
    }
    const read = await readJsonl(path, bytes, {}, { chunkBytes: 3 });
    expect(read.lines).toEqual([1, 4, 5]);
    expect(read.examples).toEqual((await readJsonl(path, bytes)).examples);
  });

  it('reads a file longer than the longest string: 520 MiB of blank padding around 3 rows', async () => {
    const limit = constants.MAX_STRING_LENGTH;
    const path = await file('big.jsonl', '');
    const handle = await open(path, 'w');
    const blank = Buffer.alloc(1 << 20, ' ');
    blank[blank.length - 1] = 0x0a; // 1 MiB lines of spaces: blank lines, skipped
    await handle.write('{"text":"first"}\n');
    for (let i = 0; i < 520; i++) await handle.write(blank);
    await handle.write('{"text":"middle"}\n');
    await handle.write('{"prompt":"p","completion":"last"}\n');
    await handle.close();
    const size = (await import('node:fs')).statSync(path).size;
    expect(size).toBeGreaterThan(limit);
    const read = await readJsonl(path, bytes);
    expect(read.examples).toHaveLength(3);
    expect(read.lines).toEqual([1, 522, 523]);
  }, 120_000);
});
