// Preference pairs (preference-line.ts, preference.ts): TRL's preference
// lines (text or conversations, explicit or implicit prompt), tokenized as
// two examples and laid next to each other in a row of 2 x T; bad lines
// named by file:line; pairs that cannot train dropped.
import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  IGNORE_INDEX,
  implicitPrompt,
  parseJsonlLine,
  parsePreferenceLine,
  preferenceRows,
  readPreferenceJsonl,
} from '../src/index.js';
import { bytes, chatBytes, enc, tempFiles } from './helpers.js';

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
      'expected "chosen" and "rejected" (a preference pair, "prompt" optional); "rejected" is missing',
    );
    expect(why(line('a', 'b', ''))).toBe('"rejected" is empty');
    expect(why(line('a', 'b', 3))).toBe('"rejected" must be a string, found a number');
    expect(why(line('a', 'b', 'b'))).toBe('"chosen" and "rejected" are the same response');
    expect(why(line([{ role: 'user', content: 'a' }], 'b', 'c'))).toContain(
      'mixes text and message lists',
    );
    expect(why('[1]')).toBe('expected a JSON object, found an array');
    // The SFT reader names the objective that reads such lines, with or without a prompt.
    expect(parseJsonlLine(line('a', 'b', 'c'), bytes)).toContain('--objective dpo');
    expect(parseJsonlLine('{"chosen": "a", "rejected": "b"}', bytes)).toContain('--objective dpo');
  });

  it("an implicit prompt is the two responses' common start, as TRL's extract_prompt", () => {
    expect(implicitPrompt('The cat sat.', 'The cat ran.')).toEqual(['The cat', ' sat.', ' ran.']);
    expect(implicitPrompt('Q: yes', 'Q: no')).toEqual(['Q:', ' yes', ' no']);
    expect(implicitPrompt('abc', 'xyz')).toEqual(['', 'abc', 'xyz']);
    const pair = parsePreferenceLine('{"chosen": "Q: yes", "rejected": "Q: no"}', bytes);
    expect(pair).toEqual(parsePreferenceLine(line('Q:', ' yes', ' no'), bytes));
    expect(parsePreferenceLine('{"chosen": "Q: yes", "rejected": "Q: yes!"}', bytes)).toBe(
      'one response is the start of the other',
    );
  });

  it("conversations are rendered with the chat template, loss on the response's assistant turn", () => {
    const user = { role: 'user', content: 'hi?' };
    const say = (content: string) => [{ role: 'assistant', content }];
    const explicit = parsePreferenceLine(
      JSON.stringify({ prompt: [user], chosen: say('yes'), rejected: say('no') }),
      chatBytes,
    );
    if (typeof explicit === 'string') throw new Error(explicit);
    expect(Array.from(explicit.chosen.ids)).toEqual(enc('user: hi?\nassistant: yes\n'));
    const trained = (ids: Int32Array, labels: Int32Array) =>
      Array.from(ids).filter((_, i) => labels[i] !== IGNORE_INDEX);
    expect(trained(explicit.chosen.ids, explicit.chosen.labels)).toEqual(enc('yes\n'));
    expect(trained(explicit.rejected.ids, explicit.rejected.labels)).toEqual(enc('no\n'));
    // The implicit prompt: the messages both sides start with.
    const implicit = parsePreferenceLine(
      JSON.stringify({ chosen: [user, ...say('yes')], rejected: [user, ...say('no')] }),
      chatBytes,
    );
    expect(implicit).toEqual(explicit);
    const lines = (o: object) => parsePreferenceLine(JSON.stringify(o), chatBytes);
    expect(lines({ chosen: say('a'), rejected: say('b') })).toContain('share no first message');
    expect(lines({ prompt: [user], chosen: [user], rejected: say('b') })).toBe(
      '"chosen": no "assistant" message to train on',
    );
    // A conversation needs the model's chat template.
    expect(() =>
      parsePreferenceLine(
        JSON.stringify({ prompt: [user], chosen: say('a'), rejected: say('b') }),
        bytes,
      ),
    ).toThrow('chat template');
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
    // Responses that differ past the context are the same row twice: dropped, saying so.
    const late = parsePreferenceLine(line('Q', 'abcdef', 'abcdeg'), bytes);
    if (typeof late === 'string') throw new Error(late);
    const cut = preferenceRows([ok, late], [1, 3], 4, EOS);
    expect(cut.rows).toHaveLength(1);
    expect(cut.dropped).toEqual([
      {
        line: 3,
        message: 'the two responses differ only after --seq-len 4: cut there, they are the same',
      },
    ]);
    expect(preferenceRows([late], [3], 7, EOS).rows).toHaveLength(1); // within 7 they differ
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
