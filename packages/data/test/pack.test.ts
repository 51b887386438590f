import { describe, expect, it } from 'vitest';
import {
  IGNORE_INDEX,
  collate,
  keepEnds,
  lossTokenCount,
  pack,
  padHalvesToLongest,
  padToLongest,
  padExamples,
  padOrTruncate,
  splitIds,
  splitTrainValidation,
  tokenizePromptCompletion,
  tokenizeText,
  type TokenizedExample,
} from '../src/index.js';
import { bytes } from './helpers.js';

const PAD = 0;
const docs: TokenizedExample[] = [
  tokenizeText(bytes, 'hello world'), // 12 tokens with EOS
  tokenizePromptCompletion(bytes, 'Q: 2+2?\n', '4'), // 10 tokens, 8 masked
  tokenizeText(bytes, 'abc'), // 4 tokens
];
const streamIds = docs.flatMap((d) => Array.from(d.ids));
const streamLabels = docs.flatMap((d) => Array.from(d.labels));

describe('pack', () => {
  it('cuts the stream into full rows of T, dropping the tail by default', () => {
    const T = 8; // 26 tokens -> 3 rows, 2 dropped
    const rows = pack(docs, T);
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row.ids).toHaveLength(T);
      expect(row.length).toBe(T);
    }
    expect(rows.flatMap((r) => Array.from(r.ids))).toEqual(streamIds.slice(0, 24));
    expect(rows.flatMap((r) => Array.from(r.labels))).toEqual(streamLabels.slice(0, 24));
  });

  it('pads the tail into one last row when asked, labels ignored on padding', () => {
    const rows = pack(docs, 8, { remainder: 'pad', padId: PAD });
    expect(rows).toHaveLength(4);
    const last = rows[3]!;
    expect(last.length).toBe(2);
    expect(Array.from(last.ids)).toEqual([...streamIds.slice(24), 0, 0, 0, 0, 0, 0]);
    expect(Array.from(last.labels.subarray(2)).every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(pack(docs, 13, { remainder: 'pad', padId: PAD })).toHaveLength(2); // 26 = 2 * 13
  });

  it('keeps every label aligned with its id across row boundaries', () => {
    for (const T of [2, 3, 5, 7, 26, 40]) {
      const rows = pack(docs, T, { remainder: 'pad', padId: PAD });
      const ids = rows.flatMap((r) => Array.from(r.ids.subarray(0, r.length)));
      const labels = rows.flatMap((r) => Array.from(r.labels.subarray(0, r.length)));
      expect(ids).toEqual(streamIds);
      expect(labels).toEqual(streamLabels);
    }
  });

  it('rejects a context too short to predict anything and misaligned examples', () => {
    expect(() => pack(docs, 1)).toThrow(/>= 2/);
    const bad = { ids: new Int32Array(3), labels: new Int32Array(2) };
    expect(() => pack([bad], 4)).toThrow(/3 ids but 2 labels/);
  });
});

describe('padOrTruncate', () => {
  it('right-pads with padId and ignored labels, recording the length', () => {
    const row = padOrTruncate(docs[2]!, 6, PAD);
    expect(Array.from(row.ids)).toEqual([...docs[2]!.ids, PAD, PAD]);
    expect(Array.from(row.labels)).toEqual([...docs[2]!.labels, IGNORE_INDEX, IGNORE_INDEX]);
    expect(row.length).toBe(4);
    expect(row.truncated).toBe(0);
  });

  it('truncates at the end and counts what it cut', () => {
    const row = padOrTruncate(docs[0]!, 5, PAD);
    expect(Array.from(row.ids)).toEqual(Array.from(docs[0]!.ids.subarray(0, 5)));
    expect(row.truncated).toBe(7);
    const all = padExamples(docs, 10, PAD);
    expect(all.truncatedExamples).toBe(1);
    expect(all.truncatedTokens).toBe(2);
    expect(all.rows.map((r) => r.length)).toEqual([10, 10, 4]);
  });

  it("keepEnds (truncation_mode keep_end) keeps a long example's last tokens, labels aligned", () => {
    const cut = keepEnds(docs, 5);
    expect(Array.from(cut.examples[0]!.ids)).toEqual(Array.from(docs[0]!.ids.subarray(7)));
    // The prompt/completion example keeps its completion and EOS, trained.
    expect(Array.from(cut.examples[1]!.labels)).toEqual([
      ...Array.from(docs[1]!.labels.subarray(5, 8)),
      ...Array.from(docs[1]!.ids.subarray(8)),
    ]);
    expect(cut.examples[2]).toBe(docs[2]); // short enough: as it was
    expect([cut.truncatedExamples, cut.truncatedTokens]).toEqual([2, 12]);
  });
});

describe('collate and lossTokenCount', () => {
  it('stacks rows row-major and counts only positions that predict a label', () => {
    const { rows } = padExamples(docs, 12, PAD);
    const batch = collate(rows, 12);
    expect(batch.batchSize).toBe(3);
    expect(batch.seqLen).toBe(12);
    expect(batch.ids).toHaveLength(36);
    expect(Array.from(batch.ids.subarray(12, 24))).toEqual(Array.from(rows[1]!.ids));
    expect(Array.from(batch.lengths)).toEqual([12, 10, 4]);
    // Row 0: 11 (t = 1..11); row 1: completion '4' + EOS; row 2: 3 (t = 1..3).
    expect(lossTokenCount(batch)).toBe(11 + 2 + 3);
  });

  it('makes an empty batch for an empty shard and refuses mixed lengths', () => {
    const empty = collate([], 16);
    expect(empty.batchSize).toBe(0);
    expect(empty.ids).toHaveLength(0);
    expect(lossTokenCount(empty)).toBe(0);
    const rows = [padOrTruncate(docs[0]!, 8, PAD), padOrTruncate(docs[1]!, 9, PAD)];
    expect(() => collate(rows, 8)).toThrow(/row 1 has 9 ids/);
  });
});

describe('train/validation split', () => {
  it('is deterministic, disjoint and covering, and depends on the seed', () => {
    const a = splitIds(1000, { seed: 1, validationFraction: 0.1 });
    expect(splitIds(1000, { seed: 1, validationFraction: 0.1 })).toEqual(a);
    expect(a.validation).toHaveLength(100);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(
      Array.from({ length: 1000 }, (_, i) => i),
    );
    const b = splitIds(1000, { seed: 2, validationFraction: 0.1 });
    expect(b.validation).not.toEqual(a.validation);
  });

  it('keeps at least one item on each side and splits items in their order', () => {
    expect(splitIds(5, { seed: 0, validationFraction: 0.01 }).validation).toHaveLength(1);
    expect(splitIds(5, { seed: 0, validationFraction: 0.99 }).train).toHaveLength(1);
    expect(splitIds(5, { seed: 0, validationFraction: 0 }).validation).toHaveLength(0);
    expect(() => splitIds(5, { seed: 0, validationFraction: 1 })).toThrow(/\[0, 1\)/);
    const items = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const { train, validation } = splitTrainValidation(items, {
      seed: 3,
      validationFraction: 0.25,
    });
    expect(validation).toHaveLength(2);
    expect([...train].sort()).toEqual(train);
    expect([...train, ...validation].sort()).toEqual(items);
  });
});

describe('padToLongest', () => {
  it("cuts a batch after its longest row, rounded up to the multiple, keeping every row's tokens and labels", () => {
    const { rows } = padExamples(docs.slice(1), 32, PAD); // 10 and 4 real tokens
    const full = collate(rows, 32);
    const cut = padToLongest(full, 8);
    expect(cut.seqLen).toBe(16);
    expect(cut.ids).toHaveLength(2 * 16);
    for (let b = 0; b < 2; b++) {
      expect(Array.from(cut.ids.subarray(b * 16, (b + 1) * 16))).toEqual(
        Array.from(rows[b]!.ids.subarray(0, 16)),
      );
      expect(Array.from(cut.labels.subarray(b * 16, (b + 1) * 16))).toEqual(
        Array.from(rows[b]!.labels.subarray(0, 16)),
      );
    }
    expect(Array.from(cut.lengths)).toEqual([10, 4]);
    expect(lossTokenCount(cut)).toBe(lossTokenCount(full));
    expect(padToLongest(full, 1).seqLen).toBe(10);
  });

  it('leaves full rows, an empty batch, and a label past the lengths as they are', () => {
    const packed = collate(pack(docs, 8), 8);
    expect(padToLongest(packed)).toBe(packed);
    const empty = collate([], 16);
    expect(padToLongest(empty).seqLen).toBe(8);
    const { rows } = padExamples([docs[2]!], 32, PAD);
    const labelled = collate(rows, 32);
    labelled.labels[20] = 7; // a label the cut would drop
    expect(padToLongest(labelled)).toBe(labelled);
  });
});

describe('padHalvesToLongest', () => {
  it("cuts each half of two-sequence rows after the last label of any row's half", () => {
    const T = 16;
    // Two rows [first | second]: labels end at 5 and 9 in the first halves, 3 and 11 in the second.
    const rows = [
      [5, 3],
      [9, 11],
    ].map(([a, c]) => {
      const ids = Int32Array.from({ length: 2 * T }, (_, i) => 100 + i);
      const labels = new Int32Array(2 * T).fill(IGNORE_INDEX);
      for (let t = 1; t < a!; t++) labels[t] = ids[t]!;
      for (let t = 2; t < c!; t++) labels[T + t] = ids[T + t]!;
      return { ids, labels, length: 2 * T };
    });
    const full = collate(rows, 2 * T);
    const cut = padHalvesToLongest(full, 4); // 11, rounded up to 12
    expect(cut.seqLen).toBe(24);
    for (let b = 0; b < 2; b++) {
      for (const h of [0, 1]) {
        const from = b * 2 * T + h * T;
        const to = b * 24 + h * 12;
        expect(Array.from(cut.ids.subarray(to, to + 12))).toEqual(
          Array.from(full.ids.subarray(from, from + 12)),
        );
        expect(Array.from(cut.labels.subarray(to, to + 12))).toEqual(
          Array.from(full.labels.subarray(from, from + 12)),
        );
      }
    }
    expect(lossTokenCount(cut)).toBe(lossTokenCount(full));
    expect(padHalvesToLongest(full, 8)).toBe(full); // 11 rounds up to 16: nothing to cut
  });
});
