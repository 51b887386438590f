// KTO batches for the tests (kto.test.ts, kto-trl.test.ts): unpaired
// examples made from a pair batch, in the rows data's unpairedRows builds.
import { IGNORE_INDEX, type TokenBatch } from '../src/index.js';
import { T } from './pair-fixtures.js';

/** An example's prompt and completion ids. */
export type Example = { prompt: number[]; completion: number[]; desirable: boolean };

/**
 * KTO examples from a pair batch: each pair's chosen response desirable, its
 * rejected one not, in that order.
 */
export function examplesOf(pairs: TokenBatch): Example[] {
  const side = (row: number, desirable: boolean): Example => {
    const ids = Array.from(pairs.ids.subarray(row * T, (row + 1) * T));
    const labels = Array.from(pairs.labels.subarray(row * T, (row + 1) * T));
    const first = labels.findIndex((l) => l !== IGNORE_INDEX);
    const end = labels.findLastIndex((l) => l !== IGNORE_INDEX) + 1;
    return { prompt: ids.slice(0, first), completion: ids.slice(first, end), desirable };
  };
  return Array.from({ length: 2 * pairs.batchSize }, (_, s) => side(s, s % 2 === 0));
}

/**
 * The examples as one KTO batch [B, 2T], [prompt + completion | prompt + KL
 * completion], the KL completion the previous example's (the first's the
 * last's), as data's unpairedRows builds rows for one chunk; and TRL's input.
 */
export function ktoBatch(examples: Example[]) {
  const B = examples.length;
  const ids = new Int32Array(B * 2 * T);
  const labels = new Int32Array(B * 2 * T).fill(IGNORE_INDEX);
  const kl = (i: number) => examples[(i + B - 1) % B]!.completion;
  examples.forEach((e, i) => {
    [e.completion, kl(i)].forEach((completion, half) => {
      const at = i * 2 * T + half * T;
      const seq = [...e.prompt, ...completion].slice(0, T);
      ids.set(seq, at);
      seq.forEach((id, t) => t >= e.prompt.length && (labels[at + t] = id));
    });
  });
  const desirable = Uint8Array.from(examples, (e) => (e.desirable ? 1 : 0));
  const batch: TokenBatch = { ids, labels, batchSize: B, seqLen: 2 * T, desirable };
  const trl = examples.map((e, i) => ({
    prompt_ids: e.prompt,
    completion_ids: e.completion,
    KL_completion_ids: kl(i).slice(0, T - e.prompt.length),
    label: e.desirable,
  }));
  return { batch, trl };
}
