// The sample ledger of a distributed run: one line per committed step with
// the sample ids it trained on, so anyone can check that every sample of an
// epoch was consumed exactly once, faults or not.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

export const LEDGER_FILE = 'ledger.jsonl';

export class StepLedger {
  /** Starts the ledger at `path`, keeping the entries of steps <= `keepUpTo` (a resumed run). */
  constructor(
    private readonly path: string,
    keepUpTo: number,
  ) {
    let kept: string[] = [];
    if (keepUpTo > 0) {
      try {
        kept = readFileSync(path, 'utf8')
          .split('\n')
          .filter((line) => {
            try {
              return (JSON.parse(line) as { step: number }).step <= keepUpTo;
            } catch {
              return false;
            }
          });
      } catch {
        kept = [];
      }
    }
    writeFileSync(path, kept.map((l) => l + '\n').join(''));
  }

  append(step: number, epoch: number, ids: readonly number[]): void {
    appendFileSync(this.path, JSON.stringify({ step, epoch, ids }) + '\n');
  }
}
