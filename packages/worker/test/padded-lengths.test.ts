// paddedLengths: each row's length as batchesOf cuts it, what
// --train-sampling-strategy group_by_length groups by. On real files read
// with a byte tokenizer: a prompt/completion row's is its bytes plus EOS, and
// for every kind of row (prompt/completion, preference pair, KTO) a
// micro-batch of that row alone is cut to that length rounded up to 8 (each
// half of a two-sequence row). inputLengths: each row's tokens as TRL's
// num_tokens counts them.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PAD_MULTIPLE } from '@lorafleet/data';
import { loadTokenizer } from '@lorafleet/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type RowOptions,
  batchesOf,
  inputLengths,
  paddedLengths,
  prepareRows,
} from '../src/index.js';
import { tinyRun } from './helpers.js';

let dir: string;
let modelDir: string;

beforeAll(async () => {
  ({
    dir,
    config: { modelDir },
  } = await tinyRun());
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function rowsOf(name: string, records: object[], options: RowOptions) {
  const file = join(dir, name);
  await writeFile(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return (await prepareRows(file, await loadTokenizer(modelDir), options)).rows;
}

const seqLen = 32;
const words = (i: number) => 'ab '.repeat(1 + (i % 6));

describe('paddedLengths', () => {
  it('is the length batchesOf cuts a row to, for every kind of padded row', async () => {
    const completions = Array.from({ length: 9 }, (_, i) => ({
      prompt: `q${i}: `,
      completion: words(i),
    }));
    const kinds: [string, object[], RowOptions][] = [
      ['pc.jsonl', completions, { seqLen, packing: 'auto' }],
      [
        'pairs.jsonl',
        Array.from({ length: 9 }, (_, i) => ({
          prompt: `p${i}: `,
          chosen: words(i),
          rejected: words(i + 3),
        })),
        { seqLen, packing: 'auto', pairs: true },
      ],
      [
        'kto.jsonl',
        Array.from({ length: 9 }, (_, i) => ({ ...completions[i], label: i % 2 === 0 })),
        { seqLen, packing: 'auto', kto: { klChunk: 3 } },
      ],
    ];
    for (const [name, records, options] of kinds) {
      const rows = await rowsOf(name, records, options);
      expect(rows, name).toHaveLength(9);
      const lengths = paddedLengths(rows, options);
      const halves = options.pairs || options.kto ? 2 : 1;
      for (const [i, row] of rows.entries()) {
        const [alone] = batchesOf([row], 1, options);
        const cut = Math.min(seqLen, Math.ceil(lengths[i]! / PAD_MULTIPLE) * PAD_MULTIPLE);
        expect(alone!.seqLen, `${name} row ${i}`).toBe(halves * cut);
      }
      // The rows differ in length, so grouping has something to group.
      expect(new Set(lengths).size, name).toBeGreaterThan(2);
    }
    // A prompt/completion row: its bytes and EOS.
    const pc = await rowsOf('pc.jsonl', completions, { seqLen, packing: 'auto' });
    expect(Array.from(paddedLengths(pc, { seqLen }))).toEqual(
      completions.map((c) => c.prompt.length + c.completion.length + 1),
    );
  });
});

describe('inputLengths', () => {
  it("counts what TRL's attention mask does: a row's tokens, a pair's two sequences', a KTO row's example", async () => {
    const completions = Array.from({ length: 5 }, (_, i) => ({
      prompt: `q${i}: `,
      completion: words(i),
    }));
    const pc = await rowsOf('pc.jsonl', completions, { seqLen, packing: 'auto' });
    expect(Array.from(inputLengths(pc, { seqLen }))).toEqual(
      Array.from(paddedLengths(pc, { seqLen })),
    );
    const records = Array.from({ length: 5 }, (_, i) => ({
      prompt: `p${i}: `,
      chosen: words(i),
      rejected: words(i + 3),
    }));
    const options = { seqLen, packing: 'auto', pairs: true } as const;
    const pairs = await rowsOf('pairs.jsonl', records, options);
    // Each sequence: the prompt's bytes, the response's and EOS.
    expect(Array.from(inputLengths(pairs, options))).toEqual(
      records.map((r) => 2 * r.prompt.length + r.chosen.length + r.rejected.length + 2),
    );
    // A KTO row: its example (prompt, completion and EOS), not its KL sequence.
    const kto = { seqLen, packing: 'auto', kto: { klChunk: 3 } } as const;
    const unpaired = completions.map((c, i) => ({ ...c, label: i % 2 === 0 }));
    expect(Array.from(inputLengths(await rowsOf('kto.jsonl', unpaired, kto), kto))).toEqual(
      completions.map((c) => c.prompt.length + c.completion.length + 1),
    );
  });
});
