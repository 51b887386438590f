// The sample ledger: one JSON line per committed step, {"step":N,"epoch":E,"ids":[...]},
// appended synchronously as the step commits, so that anyone can check
// afterwards that every sample of an epoch was trained on exactly once,
// whatever faults, aborts and resumes happened on the way (auditLedger).
//
// Append-only: a crash loses at most the line being written (a torn last
// line, which the audit tolerates). A resumed run reopens the ledger at its
// checkpoint's step, which cuts the entries of the steps it will train again.
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';

export const LEDGER_FILE = 'ledger.jsonl';

export interface LedgerEntry {
  step: number;
  epoch: number;
  ids: number[];
}

export class LedgerError extends Error {
  override name = 'LedgerError';
}

const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** One ledger line, checked; a reason string when it is not an entry. */
function parseEntry(line: string): LedgerEntry | string {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return 'not an object';
  const { step, epoch, ids } = json as Record<string, unknown>;
  if (!isCount(step) || step === 0) return `step ${JSON.stringify(step)} is not a positive integer`;
  if (!isCount(epoch)) return `epoch ${JSON.stringify(epoch)} is not a non-negative integer`;
  if (!Array.isArray(ids) || !ids.every(isCount)) return 'ids is not a list of sample ids';
  return { step, epoch, ids };
}

interface Line {
  text: string;
  /** Byte offset just past this line's newline (or the file's end). */
  end: number;
  terminated: boolean;
}

function splitLines(bytes: Buffer): Line[] {
  const lines: Line[] = [];
  let start = 0;
  while (start < bytes.length) {
    const nl = bytes.indexOf(0x0a, start);
    const stop = nl === -1 ? bytes.length : nl;
    lines.push({
      text: bytes.toString('utf8', start, stop),
      end: nl === -1 ? stop : nl + 1,
      terminated: nl !== -1,
    });
    start = stop + 1;
  }
  return lines;
}

/** Appends committed steps to a ledger file; see the file comment. */
export class SampleLedger {
  private fd: number;
  private last: { step: number; epoch: number } = { step: 0, epoch: 0 };

  /**
   * Opens the ledger at `path`. A fresh run (keepUpTo 0) starts it empty; a
   * run resumed from a checkpoint at step `keepUpTo` keeps the entries up to
   * that step and cuts the rest (steps trained again, a torn last line).
   */
  constructor(
    readonly path: string,
    keepUpTo = 0,
  ) {
    if (!isCount(keepUpTo)) throw new RangeError(`keepUpTo ${keepUpTo} is not a step number`);
    if (keepUpTo === 0 || !existsSync(path)) writeFileSync(path, '');
    else this.cut(keepUpTo);
    this.fd = openSync(path, 'a');
  }

  /** The newest step in the ledger (0: none). */
  get lastStep(): number {
    return this.last.step;
  }

  private cut(keepUpTo: number): void {
    const lines = splitLines(readFileSync(this.path));
    let keep = 0;
    for (const [i, line] of lines.entries()) {
      const entry = line.terminated ? parseEntry(line.text) : 'torn (no newline)';
      if (typeof entry === 'string') {
        if (i === lines.length - 1) break;
        throw new LedgerError(
          `${this.path}:${i + 1}: ${entry}; the ledger is damaged before step ${keepUpTo}`,
        );
      }
      if (entry.step > keepUpTo) break;
      this.check(entry, `${this.path}:${i + 1}`);
      this.last = { step: entry.step, epoch: entry.epoch };
      keep = line.end;
    }
    truncateSync(this.path, keep);
  }

  private check(e: LedgerEntry, where: string): void {
    if (e.step <= this.last.step)
      throw new LedgerError(`${where}: step ${e.step} after step ${this.last.step}`);
    if (e.epoch < this.last.epoch)
      throw new LedgerError(
        `${where}: step ${e.step} is in epoch ${e.epoch}, after epoch ${this.last.epoch}`,
      );
  }

  /**
   * Records a committed step; written before this returns (a process crash
   * cannot lose it; sync() makes it survive a power cut too).
   */
  append(step: number, epoch: number, ids: readonly number[]): void {
    const entry = { step, epoch, ids: [...ids] };
    const bad = parseEntry(JSON.stringify(entry));
    if (typeof bad === 'string') throw new LedgerError(`${this.path}: cannot append: ${bad}`);
    this.check(entry, this.path);
    const bytes = Buffer.from(`${JSON.stringify(entry)}\n`);
    for (let at = 0; at < bytes.length;) at += writeSync(this.fd, bytes, at);
    this.last = { step, epoch };
  }

  /** fsync: call before writing a checkpoint, so that the ledger is as durable as it. */
  sync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    closeSync(this.fd);
  }
}

export interface EpochAudit {
  epoch: number;
  /** Sample ids trained on in this epoch, repeats included. */
  consumed: number;
  /** Ids trained on more than once in this epoch, ascending. */
  duplicates: number[];
  /** Ids of the dataset not trained on in this epoch, ascending. */
  missing: number[];
  /** Every id exactly once (up to `allowMissing` left out). */
  complete: boolean;
}

export interface LedgerAudit {
  /** No duplicates, every epoch but the last complete, no gaps and nothing unreadable. */
  ok: boolean;
  /** One line for a log. */
  summary: string;
  epochs: EpochAudit[];
  /** Entries read, and the first and last step (0 when there are none). */
  steps: number;
  firstStep: number;
  lastStep: number;
  /** Steps between the first and the last that have no entry. */
  missingSteps: number[];
  /** Each thing wrong besides duplicates and missing ids ("file:line: what"). */
  problems: string[];
  /** The last line was cut short by a crash: tolerated, and not counted. */
  tornLastLine: boolean;
}

export interface AuditOptions {
  /** Rows in the training set: every epoch should visit ids 0 .. datasetSize - 1. */
  datasetSize: number;
  /** Ids an epoch may leave out by design (a sampler with lastBatch 'drop': N mod G). */
  allowMissing?: number;
}

const listed = (ids: number[]) =>
  ids.length <= 8 ? ids.join(', ') : `${ids.slice(0, 8).join(', ')}, … (${ids.length})`;

/** What one pass over a ledger's lines found. */
interface LedgerRead {
  counts: Map<number, { seen: Uint8Array; consumed: number }>;
  steps: number[];
  problems: string[];
  tornLastLine: boolean;
}

/** Reads a ledger and checks, epoch by epoch, that each sample was trained on exactly once. */
export function auditLedger(path: string, options: AuditOptions): LedgerAudit {
  const { datasetSize: n, allowMissing = 0 } = options;
  if (!isCount(n) || n === 0) throw new RangeError(`datasetSize ${n} is not a positive integer`);
  const { counts, steps, problems, tornLastLine } = readLedger(path, n);
  const known = [...counts.keys()];
  for (let e = Math.min(...known); e < Math.max(...known); e++)
    if (!counts.has(e)) problems.push(`${path}: epoch ${e} has no entries`);
  const epochs: EpochAudit[] = known
    .sort((a, b) => a - b)
    .map((e) => auditEpoch(e, counts.get(e)!, n, allowMissing));
  const sorted = [...new Set(steps)].sort((a, b) => a - b);
  const missingSteps: number[] = [];
  for (let k = 1; k < sorted.length; k++)
    for (let s = sorted[k - 1]! + 1; s < sorted[k]!; s++) missingSteps.push(s);
  const ok =
    problems.length === 0 &&
    missingSteps.length === 0 &&
    epochs.every((e, k) => e.duplicates.length === 0 && (e.complete || k === epochs.length - 1));
  const audit = {
    ok,
    epochs,
    steps: steps.length,
    firstStep: sorted[0] ?? 0,
    lastStep: sorted.at(-1) ?? 0,
    missingSteps,
    problems,
    tornLastLine,
  };
  return { ...audit, summary: summarize(path, n, audit) };
}

/** One pass over the lines: ids seen per epoch, the steps, and what is malformed or out of order. */
function readLedger(path: string, n: number): LedgerRead {
  const lines = splitLines(readFileSync(path));
  const read: LedgerRead = { counts: new Map(), steps: [], problems: [], tornLastLine: false };
  const { counts, steps, problems } = read;
  let lastEpoch = 0;
  for (const [i, line] of lines.entries()) {
    const where = `${path}:${i + 1}`;
    const entry = parseEntry(line.text);
    if (typeof entry === 'string') {
      if (i === lines.length - 1 && !line.terminated) read.tornLastLine = true;
      else problems.push(`${where}: ${entry}`);
      continue;
    }
    const previous = steps.at(-1);
    if (previous !== undefined && entry.step <= previous)
      problems.push(`${where}: step ${entry.step} after step ${previous}`);
    if (entry.epoch < lastEpoch)
      problems.push(`${where}: step ${entry.step} goes back to epoch ${entry.epoch}`);
    steps.push(entry.step);
    lastEpoch = Math.max(lastEpoch, entry.epoch);
    let epoch = counts.get(entry.epoch);
    if (!epoch) counts.set(entry.epoch, (epoch = { seen: new Uint8Array(n), consumed: 0 }));
    const outside = entry.ids.filter((id) => id >= n);
    if (outside.length > 0)
      problems.push(`${where}: ids ${listed(outside)} are outside the ${n} samples`);
    for (const id of entry.ids) {
      epoch.consumed++;
      // Saturating at 2: "more than once" is all the audit needs.
      if (id < n && epoch.seen[id]! < 2) epoch.seen[id]!++;
    }
  }
  return read;
}

function auditEpoch(
  epoch: number,
  { seen, consumed }: { seen: Uint8Array; consumed: number },
  n: number,
  allowMissing: number,
): EpochAudit {
  const duplicates: number[] = [];
  const missing: number[] = [];
  for (let id = 0; id < n; id++) {
    if (seen[id] === 0) missing.push(id);
    else if (seen[id] === 2) duplicates.push(id);
  }
  const complete = duplicates.length === 0 && missing.length <= allowMissing;
  return { epoch, consumed, duplicates, missing, complete };
}

/** The audit as one log line. */
function summarize(path: string, n: number, a: Omit<LedgerAudit, 'summary'>): string {
  const { epochs, missingSteps, problems } = a;
  const parts = [
    `${path}: ${a.steps} steps${a.steps > 0 ? ` (${a.firstStep}..${a.lastStep})` : ''} over ${n} samples`,
    ...epochs.map((e, k) => {
      const state = e.complete
        ? 'complete'
        : k === epochs.length - 1 && e.duplicates.length === 0
          ? `in progress, ${n - e.missing.length} of ${n} consumed`
          : `${e.duplicates.length} ids twice or more (${listed(e.duplicates)}), ${e.missing.length} missing (${listed(e.missing)})`;
      return `epoch ${e.epoch} ${state}`;
    }),
    ...(missingSteps.length > 0 ? [`steps without an entry: ${listed(missingSteps)}`] : []),
    ...problems.slice(0, 3),
    ...(problems.length > 3 ? [`${problems.length - 3} more problems`] : []),
    ...(a.tornLastLine ? ['a torn last line (ignored)'] : []),
  ];
  return `${parts.join('; ')}: ${a.ok ? 'ok, exactly once per epoch' : 'NOT exactly once per epoch'}`;
}
