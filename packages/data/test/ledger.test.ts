// The sample ledger: appends survive as whole lines, a resume cuts the steps
// trained again, and the audit finds every duplicate, missing id, gap and
// damaged line while tolerating the torn last line of a crash.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GlobalBatchSampler,
  LedgerError,
  SAMPLER_START,
  SampleLedger,
  auditLedger,
  type SamplerState,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'lorafleet-ledger-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const fresh = () => join(dir, `ledger-${files++}.jsonl`);
const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean);

/** `steps` committed steps of a 10-sample, batch-4 run, as a trainer would log them. */
function run(ledger: SampleLedger, steps: number, from = 0, state: SamplerState = SAMPLER_START) {
  const sampler = new GlobalBatchSampler({ datasetSize: 10, seed: 3, globalBatchSize: 4 });
  for (let step = from + 1; step <= from + steps; step++) {
    const planned = sampler.plan(state);
    ledger.append(step, planned.epoch, planned.ids);
    state = planned.next;
  }
  return state;
}

describe('SampleLedger', () => {
  it('appends one JSON line per step and audits a clean run as exactly once', () => {
    const path = fresh();
    const ledger = new SampleLedger(path);
    run(ledger, 7); // 3 steps per epoch (4 + 4 + 2): epochs 0 and 1 whole, epoch 2 begun
    ledger.sync();
    ledger.close();
    expect(lines(path)).toHaveLength(7);
    expect(JSON.parse(lines(path)[0]!)).toEqual({ step: 1, epoch: 0, ids: expect.any(Array) });
    const audit = auditLedger(path, { datasetSize: 10 });
    expect(audit.ok).toBe(true);
    expect(audit.epochs.map((e) => [e.epoch, e.consumed, e.complete])).toEqual([
      [0, 10, true],
      [1, 10, true],
      [2, 4, false],
    ]);
    expect(audit.epochs[2]!.missing).toHaveLength(6);
    expect(audit.epochs[2]!.duplicates).toEqual([]);
    expect([audit.steps, audit.firstStep, audit.lastStep]).toEqual([7, 1, 7]);
    expect(audit.summary).toMatch(/7 steps \(1\.\.7\).*epoch 2 in progress, 4 of 10.*ok/);
  });

  it('starts a fresh run empty, even over an old ledger', () => {
    const path = fresh();
    writeFileSync(path, '{"step":1,"epoch":0,"ids":[1]}\n');
    new SampleLedger(path).close();
    expect(readFileSync(path, 'utf8')).toBe('');
  });

  it('refuses steps out of order, epochs going back and ids that are not ids', () => {
    const ledger = new SampleLedger(fresh());
    ledger.append(1, 0, [0, 1]);
    expect(() => ledger.append(1, 0, [2])).toThrow(/step 1 after step 1/);
    expect(() => ledger.append(2, 0, [-1])).toThrow(LedgerError);
    expect(() => ledger.append(2, 0, [1.5])).toThrow(/ids/);
    ledger.append(2, 1, [2]);
    expect(() => ledger.append(3, 0, [3])).toThrow(/epoch 0, after epoch 1/);
    expect(ledger.lastStep).toBe(2);
    ledger.close();
  });

  it('on resume keeps the steps up to the checkpoint and cuts the rest and a torn line', () => {
    const path = fresh();
    const ledger = new SampleLedger(path);
    run(ledger, 5);
    ledger.close();
    appendFileSync(path, '{"step":6,"epoch":1,"ids":[3,'); // the crash
    const resumed = new SampleLedger(path, 4);
    expect(resumed.lastStep).toBe(4);
    expect(lines(path).map((l) => (JSON.parse(l) as { step: number }).step)).toEqual([1, 2, 3, 4]);
    // Steps 5.. trained again from the checkpoint's sampler state: the same ids.
    const sampler = new GlobalBatchSampler({ datasetSize: 10, seed: 3, globalBatchSize: 4 });
    run(resumed, 4, 4, sampler.stateAtStep(4));
    resumed.close();
    const audit = auditLedger(path, { datasetSize: 10 });
    expect(audit.ok).toBe(true);
    expect(audit.lastStep).toBe(8);
    expect(audit.tornLastLine).toBe(false);
  });

  it('on resume refuses a ledger damaged before the checkpoint step', () => {
    const path = fresh();
    writeFileSync(path, '{"step":1,"epoch":0,"ids":[1]}\nxx\n{"step":3,"epoch":0,"ids":[2]}\n');
    expect(() => new SampleLedger(path, 3)).toThrow(/:2: not JSON; the ledger is damaged/);
  });

  it('on resume of a run folder without a ledger, starts one', () => {
    const path = fresh();
    const ledger = new SampleLedger(path, 9);
    ledger.append(10, 3, [1]);
    ledger.close();
    expect(lines(path)).toEqual(['{"step":10,"epoch":3,"ids":[1]}']);
  });
});

describe('auditLedger', () => {
  const write = (text: string) => {
    const path = fresh();
    writeFileSync(path, text);
    return path;
  };
  const entry = (step: number, epoch: number, ids: number[]) =>
    `${JSON.stringify({ step, epoch, ids })}\n`;

  it('tolerates a torn last line and counts nothing from it', () => {
    const path = write(entry(1, 0, [0, 1]) + entry(2, 0, [2, 3]) + '{"step":3,"epo');
    const audit = auditLedger(path, { datasetSize: 4 });
    expect(audit.ok).toBe(true);
    expect(audit.tornLastLine).toBe(true);
    expect(audit.epochs).toEqual([
      { epoch: 0, consumed: 4, duplicates: [], missing: [], complete: true },
    ]);
    expect(audit.summary).toContain('torn last line');
  });

  it('finds a sample trained twice and one never trained in a finished epoch', () => {
    const path = write(entry(1, 0, [0, 1]) + entry(2, 0, [1, 3]) + entry(3, 1, [2]));
    const audit = auditLedger(path, { datasetSize: 4 });
    expect(audit.ok).toBe(false);
    expect(audit.epochs[0]).toEqual({
      epoch: 0,
      consumed: 4,
      duplicates: [1],
      missing: [2],
      complete: false,
    });
    expect(audit.summary).toMatch(/epoch 0 1 ids twice or more \(1\), 1 missing \(2\).*NOT/);
  });

  it('finds duplicates in the epoch in progress too', () => {
    const audit = auditLedger(write(entry(1, 0, [0, 0])), { datasetSize: 4 });
    expect(audit.ok).toBe(false);
    expect(audit.epochs[0]!.duplicates).toEqual([0]);
  });

  it('reports missing steps, steps out of order, damaged lines and foreign ids', () => {
    const path = write(
      entry(1, 0, [0]) +
        entry(3, 0, [1]) +
        'garbage\n' +
        entry(2, 0, [2]) +
        entry(4, 0, [3, 7]) +
        entry(5, 0, [2]),
    );
    const audit = auditLedger(path, { datasetSize: 4 });
    expect(audit.ok).toBe(false);
    expect(audit.missingSteps).toEqual([]);
    expect(audit.problems).toEqual([
      `${path}:3: not JSON`,
      `${path}:4: step 2 after step 3`,
      `${path}:5: ids 7 are outside the 4 samples`,
    ]);
    const gap = auditLedger(write(entry(1, 0, [0]) + entry(4, 0, [1])), { datasetSize: 2 });
    expect(gap.missingSteps).toEqual([2, 3]);
    expect(gap.ok).toBe(false);
  });

  it('allows the ids a dropping sampler leaves out each epoch', () => {
    const path = write(entry(1, 0, [0, 1]) + entry(2, 1, [2, 1]));
    expect(auditLedger(path, { datasetSize: 3 }).ok).toBe(false);
    expect(auditLedger(path, { datasetSize: 3, allowMissing: 1 }).ok).toBe(true);
  });

  it('reads an empty ledger as ok with no epochs', () => {
    const audit = auditLedger(write(''), { datasetSize: 3 });
    expect(audit).toMatchObject({ ok: true, steps: 0, epochs: [], firstStep: 0, lastStep: 0 });
  });
});
