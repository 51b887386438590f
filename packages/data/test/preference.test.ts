// Preference pairs (preference.ts): TRL's {"prompt","chosen","rejected"}
// lines, tokenized as two prompt/completion examples and laid side by side in
// a row of 2 x T; bad lines named by file:line; pairs that cannot train dropped.
import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  IGNORE_INDEX,
  parseJsonlLine,
  parsePreferenceLine,
  preferenceRows,
  readPreferenceJsonl,
} from '../src/index.js';
import { bytes, enc, tempFiles } from './helpers.js';

const file = tempFiles();
const EOS = bytes.eosId;
const line = (prompt: unknown, chosen: unknown, rejected: unknown) =>
  JSON.stringify({ prompt, chosen, rejected });

describe('preference pairs', () => {
  it('each side is the prompt (no loss) then its response and EOS (the loss)', () => {
    const pair = parsePreferenceLine(line('Q:', 'yes', 'no'), bytes);
    if (typeof pair === 'string') throw new Error(pair);
    expect(Array.from(pair.chosen.ids)).toEqual([...enc('Q:yes'), EOS]);
    expect(Array.from(pair.chosen.labels)).toEqual([-100, -100, ...enc('yes'), EOS]);
    expect(Array.from(pair.rejected.ids)).toEqual([...enc('Q:no'), EOS]);
    expect(Array.from(pair.rejected.labels)).toEqual([-100, -100, ...enc('no'), EOS]);
  });

  it('says what is wrong with a line', () => {
    const why = (l: string) => parsePreferenceLine(l, bytes);
    expect(why('{"prompt": "a", "chosen": "b"}')).toBe(
      'expected "prompt", "chosen" and "rejected" strings (a preference pair); "rejected" is missing',
    );
    expect(why(line('a', 'b', ''))).toBe('"rejected" is empty');
    expect(why(line('a', 'b', 3))).toContain('"rejected" is a number');
    expect(why(line([{ role: 'user', content: 'a' }], 'b', 'c'))).toContain(
      "TRL's conversational format",
    );
    expect(why('[1]')).toBe('expected a JSON object, found an array');
    // The SFT reader names the objective that reads such lines.
    expect(parseJsonlLine(line('a', 'b', 'c'), bytes)).toContain('--objective dpo');
  });

  it('a row is [chosen | rejected], each padded (or cut) to T', () => {
    const pair = parsePreferenceLine(line('Q', 'abc', 'a very long answer'), bytes);
    if (typeof pair === 'string') throw new Error(pair);
    const made = preferenceRows([pair], [7], 6, EOS);
    expect(made.rows).toHaveLength(1);
    const row = made.rows[0]!;
    expect(Array.from(row.ids)).toEqual([...enc('Qabc'), EOS, EOS, ...enc('Qa ver')]);
    expect(Array.from(row.labels)).toEqual([
      ...[IGNORE_INDEX, ...enc('abc'), EOS, IGNORE_INDEX],
      ...[IGNORE_INDEX, ...enc('a ver')],
    ]);
    expect(Array.from(made.rowLines)).toEqual([7]);
    expect(made.truncatedSides).toBe(1);
    expect(made.truncatedTokens).toBe(1 + 18 + 1 - 6); // Q, the answer, EOS
  });

  it('drops a pair whose prompt leaves a side nothing to train within T, and refuses data with none left', () => {
    const ok = parsePreferenceLine(line('Q', 'a', 'b'), bytes);
    const long = parsePreferenceLine(line('a long prompt', 'a', 'b'), bytes);
    if (typeof ok === 'string' || typeof long === 'string') throw new Error('bad fixture');
    const made = preferenceRows([ok, long], [1, 2], 4, EOS);
    expect(made.rows).toHaveLength(1);
    expect(made.dropped).toEqual([
      {
        line: 2,
        message: 'the "chosen" response has no token within --seq-len 4 after its prompt',
      },
    ]);
    expect(() => preferenceRows([long], [2], 4, EOS)).toThrow(DatasetError);
  });

  it('reads a file, skipping bad lines by file:line', async () => {
    const path = await file(
      'pairs.jsonl',
      [line('a', 'b', 'c'), '', '{"text": "x"}', line('d', 'e', 'f')].join('\n') + '\n',
    );
    const read = await readPreferenceJsonl(path, bytes, { maxBadFraction: 0.5 });
    expect(read.pairs).toHaveLength(2);
    expect(read.lines).toEqual([1, 4]);
    expect(read.badRecords).toBe(1);
    expect(read.problems[0]).toMatchObject({ line: 3 });
    await expect(readPreferenceJsonl(path, bytes)).rejects.toThrow('more than');
  });
});
