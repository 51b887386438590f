// Preference pairs for DPO, ORPO and SimPO: a JSONL file of TRL's preference lines
// (preference-line.ts) read into pairs, and each pair padded to the context
// with its two sides next to each other in one row of 2 x T tokens,
// [chosen | rejected]. One row is one pair, so the sampler, shards, ledger
// and N-workers-equal-one hold for pairs as they do for rows.

import { readJsonlRecords } from './jsonl.js';
import { type PreferencePair, parsePreferenceLine } from './preference-line.js';
import { padOrTruncate, type SequenceRow } from './pack.js';
import {
  DEFAULT_REPORT_FIRST,
  DatasetError,
  type BadLinePolicy,
  type ReadSummary,
} from './problems.js';
import type { TextTokenizer } from './tokenizer.js';
import { firstTrainedPosition } from './untrainable.js';

export interface PreferenceRead extends ReadSummary {
  pairs: PreferencePair[];
  /** The 1-based line each pair came from. */
  lines: number[];
}

/** Reads a JSONL file of {"prompt", "chosen", "rejected"} lines, skipping bad lines under `policy`. */
export async function readPreferenceJsonl(
  file: string,
  tokenizer: TextTokenizer,
  policy: BadLinePolicy = {},
): Promise<PreferenceRead> {
  const parse = (line: string) => parsePreferenceLine(line, tokenizer);
  const { items, ...read } = await readJsonlRecords(file, parse, policy);
  return { ...read, pairs: items };
}

/** Pair rows, what was cut or dropped to make them, and each row's source line. */
export interface PreferenceRows {
  rows: SequenceRow[];
  rowLines: Int32Array;
  /** Pairs dropped: a side with no response token within the context, or sides the same once cut to it. */
  dropped: { line: number; message: string }[];
  /** Sides longer than the context, cut at its end, and the tokens lost. */
  truncatedSides: number;
  truncatedTokens: number;
}

/**
 * Each pair as one row of 2 x `seqLen`: the chosen side right-padded (or cut)
 * to seqLen with `padId`, then the rejected side the same way. A pair whose
 * prompt leaves either response no trained token within seqLen is dropped
 * (the objectives compare the two responses: half a pair teaches nothing).
 */
export function preferenceRows(
  pairs: readonly PreferencePair[],
  lines: readonly number[],
  seqLen: number,
  padId: number,
): PreferenceRows {
  const out: PreferenceRows = {
    rows: [],
    rowLines: new Int32Array(0),
    dropped: [],
    truncatedSides: 0,
    truncatedTokens: 0,
  };
  const rowLines: number[] = [];
  pairs.forEach((pair, i) => {
    const line = lines[i] ?? 0;
    const short = (['chosen', 'rejected'] as const).find(
      (side) => firstTrainedPosition(pair[side], seqLen) < 0,
    );
    if (short) {
      out.dropped.push({
        line,
        message: `the "${short}" response has no token within --seq-len ${seqLen} after its prompt`,
      });
      return;
    }
    const chosen = padOrTruncate(pair.chosen, seqLen, padId);
    const rejected = padOrTruncate(pair.rejected, seqLen, padId);
    if (sameRow(chosen, rejected)) {
      // Their loss is log 2 whatever the adapter: nothing to learn, and it would dilute the mean.
      out.dropped.push({
        line,
        message: `the two responses differ only after --seq-len ${seqLen}: cut there, they are the same`,
      });
      return;
    }
    for (const side of [chosen, rejected]) {
      if (side.truncated > 0) out.truncatedSides++;
      out.truncatedTokens += side.truncated;
    }
    out.rows.push(joinSides(chosen, rejected, seqLen));
    rowLines.push(line);
  });
  out.rowLines = Int32Array.from(rowLines);
  if (out.rows.length === 0 && pairs.length > 0) {
    const first = out.dropped.slice(0, DEFAULT_REPORT_FIRST);
    const more = out.dropped.length - first.length;
    throw new DatasetError(
      `none of the ${pairs.length} preference pairs can train within --seq-len ${seqLen}; ` +
        `raise --seq-len or shorten the prompts:${first.map((d) => `\n  line ${d.line}: ${d.message}`).join('')}` +
        (more > 0 ? `\n  ... and ${more} more` : ''),
    );
  }
  return out;
}

function sameRow(a: SequenceRow, b: SequenceRow): boolean {
  return a.ids.every((id, i) => id === b.ids[i]) && a.labels.every((l, i) => l === b.labels[i]);
}

/** [chosen | rejected], each T long: a row of 2T. */
function joinSides(chosen: SequenceRow, rejected: SequenceRow, seqLen: number): SequenceRow {
  const ids = new Int32Array(2 * seqLen);
  const labels = new Int32Array(2 * seqLen);
  ids.set(chosen.ids);
  ids.set(rejected.ids, seqLen);
  labels.set(chosen.labels);
  labels.set(rejected.labels, seqLen);
  return { ids, labels, length: chosen.length + rejected.length };
}
