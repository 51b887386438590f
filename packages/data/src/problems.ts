import type { TokenizedExample } from './tokenizer.js';

// The bad-lines policy shared by the line-oriented readers (JSONL, CSV).
//
// Skip and count: a line (a CSV record) that cannot become an example is
// skipped and counted; the first `reportFirst` are kept as `file:line: what is
// wrong`. Reading fails with a DatasetError when more lines are bad than the
// policy allows, or when no line at all gave an example. Blank lines are not
// records: they are ignored silently.

/** One thing wrong with one line of one file. */
export interface Problem {
  file: string;
  line: number; // 1-based; for CSV, the line where the record starts
  message: string;
}

/** How many bad lines a read tolerates before it fails. */
export interface BadLinePolicy {
  /** Absolute limit on bad lines. Takes precedence over `maxBadFraction`. */
  maxBadLines?: number;
  /** Limit as a fraction of the records read (default 0.01, i.e. 1%, rounded down). */
  maxBadFraction?: number;
  /** How many problems to keep for the report (default 10); all are counted. */
  reportFirst?: number;
  /**
   * What the error tells the user to raise to skip more (e.g. a command-line
   * option); default: "maxBadLines or maxBadFraction", this policy's fields.
   */
  raiseWith?: string;
}

export const DEFAULT_MAX_BAD_FRACTION = 0.01;
export const DEFAULT_REPORT_FIRST = 10;

/** What a reader saw, besides the examples. */
export interface ReadSummary {
  file: string;
  records: number; // non-blank lines (JSONL) or data records (CSV), good and bad
  badRecords: number;
  problems: Problem[]; // the first `reportFirst` of them
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}: ${p.message}`;
}

/** A dataset that cannot be used as it is; `problems` holds the first few reasons. */
export class DatasetError extends Error {
  constructor(
    message: string,
    readonly problems: readonly Problem[] = [],
  ) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** Counts records and bad records for one file and applies the policy at the end. */
export class ProblemLog {
  private records = 0;
  private bad = 0;
  private readonly kept: Problem[] = [];
  private readonly reportFirst: number;

  constructor(
    readonly file: string,
    private readonly policy: BadLinePolicy = {},
  ) {
    this.reportFirst = policy.reportFirst ?? DEFAULT_REPORT_FIRST;
    checkPolicy(policy);
  }

  /** Counts one record (call for good and bad ones alike). */
  record(): void {
    this.records++;
  }

  /** Marks the current record bad (it was counted by `record`). */
  reject(line: number, message: string): void {
    this.bad++;
    if (this.kept.length < this.reportFirst) this.kept.push({ file: this.file, line, message });
  }

  /** The limit on bad records for what has been read so far. */
  limit(): number {
    const { maxBadLines, maxBadFraction = DEFAULT_MAX_BAD_FRACTION } = this.policy;
    return maxBadLines ?? Math.floor(maxBadFraction * this.records);
  }

  /** Applies the policy: throws a DatasetError, or returns the summary. */
  finish(examples: number): ReadSummary {
    const summary = {
      file: this.file,
      records: this.records,
      badRecords: this.bad,
      problems: [...this.kept],
    };
    const listing = this.kept.map((p) => `\n  ${formatProblem(p)}`).join('');
    const more =
      this.bad > this.kept.length ? `\n  ... and ${this.bad - this.kept.length} more` : '';
    if (this.bad > this.limit()) {
      throw new DatasetError(
        `${this.file}: ${this.bad} of ${this.records} records are bad, more than the ` +
          `${this.limit()} allowed (raise ${this.policy.raiseWith ?? 'maxBadLines or maxBadFraction'} to skip them):${listing}${more}`,
        summary.problems,
      );
    }
    if (examples === 0) {
      throw new DatasetError(
        `${this.file}: no valid example in ${this.records} records${listing}${more}`,
        summary.problems,
      );
    }
    return summary;
  }
}

function checkPolicy(policy: BadLinePolicy): void {
  const { maxBadLines, maxBadFraction, reportFirst } = policy;
  if (maxBadLines !== undefined && !(Number.isInteger(maxBadLines) && maxBadLines >= 0)) {
    throw new RangeError(`maxBadLines must be a non-negative integer, got ${maxBadLines}`);
  }
  if (maxBadFraction !== undefined && !(maxBadFraction >= 0 && maxBadFraction <= 1)) {
    throw new RangeError(`maxBadFraction must be in [0, 1], got ${maxBadFraction}`);
  }
  if (reportFirst !== undefined && !(Number.isInteger(reportFirst) && reportFirst >= 0)) {
    throw new RangeError(`reportFirst must be a non-negative integer, got ${reportFirst}`);
  }
}

/** What a reader returns: the examples and what it skipped. */
export interface ReadResult extends ReadSummary {
  examples: TokenizedExample[];
  /** The 1-based line (CSV: the record's first line) each example came from. */
  lines: number[];
  /**
   * Whether any record was a prompt/completion or a conversation: an example
   * to keep whole in its own row, not a document to pack.
   */
  prompted: boolean;
}
