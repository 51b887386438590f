import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  IGNORE_INDEX,
  dropUntrainable,
  firstTrainedPosition,
  readJsonl,
} from '../src/index.js';
import { bytes, tempFiles } from './helpers.js';

const file = tempFiles();

/** A prompt of `n` bytes and a completion: the completion's first token is at n. */
const row = (n: number, completion = 'ok') => JSON.stringify({ prompt: 'p'.repeat(n), completion });

describe('dropUntrainable', () => {
  it('drops rows whose completion --seq-len cuts off, naming them by file:line', async () => {
    const path = await file(
      'cut.jsonl',
      [row(3), row(40), '', row(31), row(30), row(50)].join('\n') + '\n',
    );
    const read = await readJsonl(path, bytes);
    expect(read.lines).toEqual([1, 2, 4, 5, 6]);
    const kept = dropUntrainable(read, 32);
    // Position 31 is the last one a 32-token row trains (predicted from 30).
    expect(kept.lines).toEqual([1, 4, 5]);
    expect(kept.examples.map((e) => firstTrainedPosition(e, 32))).toEqual([3, 31, 30]);
    expect(kept.dropped).toBe(2);
    expect(kept.problems).toEqual([
      {
        file: path,
        line: 2,
        message:
          'no trained token within --seq-len 32: the completion starts at token 40 of 43, after truncation to 32',
      },
      {
        file: path,
        line: 6,
        message:
          'no trained token within --seq-len 32: the completion starts at token 50 of 53, after truncation to 32',
      },
    ]);
    // Packed, a completion is never cut off: nothing is dropped.
    expect(dropUntrainable(read, undefined).dropped).toBe(0);
  });

  it('drops pre-tokenized rows without a label, in any mode', async () => {
    const path = await file(
      'labels.jsonl',
      [
        JSON.stringify({
          input_ids: [1, 2, 3],
          labels: [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
        }),
        // labels[0] predicts nothing: this row trains no token either.
        JSON.stringify({ input_ids: [1, 2, 3], labels: [1, IGNORE_INDEX, IGNORE_INDEX] }),
        JSON.stringify({ input_ids: [1, 2, 3], labels: [IGNORE_INDEX, IGNORE_INDEX, 3] }),
      ].join('\n'),
    );
    const kept = dropUntrainable(await readJsonl(path, bytes), undefined);
    expect(kept.lines).toEqual([3]);
    expect(kept.problems.map((p) => [p.line, p.message])).toEqual([
      [1, 'no token is trained (every label is -100)'],
      [2, 'no token is trained (every label is -100)'],
    ]);
  });

  it('refuses the data only when no row is left, listing the first few and counting the rest', async () => {
    const path = await file('all-cut.jsonl', Array.from({ length: 12 }, () => row(64)).join('\n'));
    const read = await readJsonl(path, bytes);
    let error: unknown;
    try {
      dropUntrainable(read, 32, 3);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DatasetError);
    const message = (error as DatasetError).message;
    expect(message).toContain(
      `${path}: none of its 12 examples has a token to train on within --seq-len 32; raise --seq-len or shorten the prompts:`,
    );
    expect(message).toContain(`\n  ${path}:3: no trained token within --seq-len 32`);
    expect(message).not.toContain(`${path}:4:`);
    expect(message).toContain('... and 9 more');
    expect((error as DatasetError).problems).toHaveLength(3);
  });
});
