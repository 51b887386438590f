// Faults at the awkward moments, with real processes (issue 15): a worker
// lost while the ring evaluates, while it re-forms, while it hands its state
// to a joiner; the coordinator killed while rank 0 writes a checkpoint. The
// test hook LORAFLEET_FAULT_PAUSE makes workers wait at that moment and say
// so, and the test kills a process exactly then. Each run must end as a
// fault-free one would: every sample once per epoch, nothing lost.
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  WORKERS_TOLERANCE,
  adapterBytes,
  adapterGap,
  checkpointDir,
  numberedPatternRecords,
  preferenceRecords,
  readJson,
  removeDir,
  writeJsonl,
  trainFixture,
} from './helpers.js';
import {
  type Running,
  checkLedger,
  killAndTime,
  killLeftovers,
  report,
  rowsOf,
  runToEnd,
  signal,
  start,
} from './fault-runs.js';

const TRAIN = ['--batch-size', '6', '--lora-dropout', '0', '--lr', '1e-2', '--seed', '5'];

let dir: string;
let model: string;
let data: string;
let valid: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('awkward', numberedPatternRecords(40)));
  valid = await writeJsonl(join(dir, 'valid.jsonl'), numberedPatternRecords(112).slice(100));
}, 120_000);

afterEach(killLeftovers);
afterAll(() => removeDir(dir));

const trainArgs = (out: string, workers: number, steps: number, ...more: string[]) => [
  'train',
  ...['--model', model, '--data', data, '--out', out, '--workers', String(workers)],
  ...['--steps', String(steps), ...TRAIN, ...more],
];

/** The run ended well, each `pid` was lost, and the ledger holds every step once, in order. */
async function expectRecovered(run: Running, out: string, lost: number[], steps: number) {
  const result = await run.done;
  expect(result.code, result.output).toBe(0);
  for (const pid of lost) expect(result.output).toContain(`(pid ${pid}) lost`);
  const audit = checkLedger(
    await readFile(join(out, 'ledger.jsonl'), 'utf8'),
    rowsOf(result.output),
  );
  expect(audit, result.output).toMatchObject({
    duplicates: [],
    missing: [],
    steps,
    stepsInOrder: true,
  });
  return result;
}

describe('faults at the awkward moments', () => {
  it('a worker lost during evaluation: the survivors late EvalDone is discarded and the eval runs again', async () => {
    const out = join(dir, 'eval');
    const run = start(trainArgs(out, 3, 6, '--eval-data', valid, '--eval-every', '3'), {
      LORAFLEET_FAULT_PAUSE: 'eval:1500',
    });
    // Every ring member pauses before its EvalDone: kill another one meanwhile,
    // so the one that said so answers after the loss is known.
    const pause = await run.untilPause('eval', { step: 3 });
    const victim = run.workerPids().find((pid) => pid !== pause.pid)!;
    report('worker lost during eval (pauses 1.5 s)', await killAndTime(run, out, victim));
    const result = await expectRecovered(run, out, [victim], 6);
    expect(result.output).toMatch(new RegExp(`step 4 aborted: worker \\d+ \\(pid ${victim}\\)`));
    const metrics = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    const evalLoss = (JSON.parse(metrics[2]!) as { evalLoss?: number }).evalLoss;
    expect(evalLoss, result.output).toBeGreaterThan(0);
  }, 120_000);

  it("a worker lost between a KTO step's KL sums and their all-reduce: the step runs again on the survivors and ends as without the fault", async () => {
    const examples = await writeJsonl(
      join(dir, 'kto.jsonl'),
      preferenceRecords(20).flatMap(({ prompt, chosen, rejected }) => [
        { prompt, completion: chosen, label: true },
        { prompt, completion: rejected, label: false },
      ]),
    );
    const args = (out: string, workers: number) => [
      ...['train', '--model', model, '--data', examples, '--out', out],
      ...['--workers', String(workers), '--steps', '6', ...TRAIN],
      ...['--objective', 'kto', '--seq-len', '24', '--max-restarts', '0'],
    ];
    const out = join(dir, 'kto');
    const run = start(args(out, 3), { LORAFLEET_FAULT_PAUSE: 'shared:1500' });
    // Every ring member pauses before the KL all-reduce: kill another one meanwhile.
    const pause = await run.untilPause('shared', { step: 3 });
    const victim = run.workerPids().find((pid) => pid !== pause.pid)!;
    report(
      "worker lost before a KTO step's KL all-reduce (pauses 1.5 s)",
      await killAndTime(run, out, victim),
    );
    const result = await expectRecovered(run, out, [victim], 6);
    expect(result.output).toMatch(new RegExp(`step 3 aborted: worker \\d+ \\(pid ${victim}\\)`));
    // The retried step sums the KL of the same global batch over 2 workers: 1 worker's adapter.
    const whole = await runToEnd(args(join(dir, 'kto-whole'), 1));
    expect(whole.code, whole.output).toBe(0);
    const gap = await adapterGap(join(out, 'adapter'), join(dir, 'kto-whole', 'adapter'));
    expect(gap.largestB).toBeGreaterThan(1e-3);
    expect(gap.diff).toBeLessThan(WORKERS_TOLERANCE);
  }, 120_000);

  it('a worker lost during a regroup: the survivors stale Regrouped is discarded', async () => {
    const out = join(dir, 'regroup');
    const run = start(trainArgs(out, 3, 8, '--max-restarts', '0'), {
      LORAFLEET_FAULT_PAUSE: 'regroup:1500',
      LORAFLEET_FAULT_STEP_DELAY_MS: '100',
    });
    await run.untilStep(out, 2);
    const [first, ...others] = run.workerPids();
    signal(first!, 'SIGKILL');
    // The two survivors re-form the ring and pause before Regrouped: lose the other one now.
    const pause = await run.untilPause('regroup');
    const second = others.find((pid) => pid !== pause.pid)!;
    report('worker lost during a regroup (pauses 1.5 s)', await killAndTime(run, out, second));
    const result = await expectRecovered(run, out, [first!, second], 8);
    expect(result.output).toMatch(/ring generation 2: 1 worker\(s\)/);
  }, 120_000);

  it('a worker lost during state transfer to a joiner: another member hands its state over', async () => {
    const out = join(dir, 'state');
    const run = start(trainArgs(out, 3, 16, '--max-restarts', '4'), {
      LORAFLEET_FAULT_PAUSE: 'state:2000',
      LORAFLEET_FAULT_STEP_DELAY_MS: '150',
    });
    await run.untilStep(out, 2);
    const first = run.workerPids()[0]!;
    signal(first, 'SIGKILL');
    // Its replacement loads, then a ring member sends it the trainer state: kill that member.
    const pause = await run.untilPause('state');
    report(
      'source lost during state transfer (pauses 2 s)',
      await killAndTime(run, out, pause.pid),
    );
    const result = await expectRecovered(run, out, [first, pause.pid], 16);
    expect(run.pauses('state').length, result.output).toBeGreaterThanOrEqual(2);
    expect(result.output).toMatch(/worker \d+ \(pid \d+\) joined the ring at step \d+/);
    const summary = await readJson<{ faults: { workersJoined: number } }>(
      join(out, 'summary.json'),
    );
    expect(summary.faults.workersJoined).toBeGreaterThanOrEqual(1);
  }, 180_000);

  it('another worker lost while rank 0 writes a checkpoint: the ring re-forms at the next step', async () => {
    const out = join(dir, 'beside-checkpoint');
    const run = start(trainArgs(out, 3, 8, '--checkpoint-every', '4', '--max-restarts', '0'), {
      LORAFLEET_FAULT_PAUSE: 'checkpoint:1500',
    });
    // The coordinator waits on rank 0 alone: the loss surfaces at the next step boundary.
    const pause = await run.untilPause('checkpoint', { step: 4 });
    const victim = run.workerPids().find((pid) => pid !== pause.pid)!;
    report('worker lost beside a checkpoint (pauses 1.5 s)', await killAndTime(run, out, victim));
    const result = await expectRecovered(run, out, [victim], 8);
    expect(result.output).toMatch(/ring generation 1: 2 worker\(s\) at step 4/);
  }, 120_000);

  it('the coordinator killed while rank 0 writes a checkpoint: the partial one is never used; --resume is bitwise', async () => {
    const args = (out: string, ...more: string[]) =>
      trainArgs(out, 2, 12, '--checkpoint-every', '4', ...more);
    const whole = await runToEnd(args(join(dir, 'whole')));
    expect(whole.code, whole.output).toBe(0);

    const out = join(dir, 'killed');
    const run = start(args(out), { LORAFLEET_FAULT_PAUSE: 'checkpoint:3000' });
    // Rank 0 has written the adapter of step 8, not its optimizer state nor its manifest.
    await run.untilPause('checkpoint', { step: 8 });
    // The whole job dies at once (its node lost): an orphaned rank 0 would
    // otherwise finish the folder, which is still never renamed into place.
    run.child.kill('SIGKILL');
    for (const pid of run.workerPids()) signal(pid, 'SIGKILL');
    await run.done;
    const partial = join(out, 'checkpoints', '.tmp-step-000008');
    expect((await readdir(partial)).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'trainer_state.json',
    ]);
    expect((await readdir(join(out, 'checkpoints'))).sort()).toEqual([
      '.tmp-step-000008',
      'step-000004',
    ]);
    // Named directly, the partial folder is refused.
    const refused = await runToEnd(args(join(dir, 'from-partial'), '--resume', partial));
    expect(refused.code, refused.output).not.toBe(0);
    expect(refused.output).toMatch(/this checkpoint is unusable/);

    const t0 = performance.now();
    const resumed = await runToEnd(args(out, '--resume', out));
    console.log(
      `resumed after a kill mid-checkpoint: 8 steps in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
    );
    expect(resumed.code, resumed.output).toBe(0);
    expect(resumed.output).toMatch(/resuming from .*step-000004 at step 4/);
    expect((await adapterBytes(out)).equals(await adapterBytes(join(dir, 'whole')))).toBe(true);
    for (const step of [8, 12]) {
      const final = await readFile(join(checkpointDir(out, step), 'optimizer.safetensors'));
      const clean = await readFile(
        join(checkpointDir(join(dir, 'whole'), step), 'optimizer.safetensors'),
      );
      expect(final.equals(clean), `step ${step}`).toBe(true);
    }
    await expect(stat(partial)).rejects.toThrow(/ENOENT/);
    const audit = checkLedger(
      await readFile(join(out, 'ledger.jsonl'), 'utf8'),
      rowsOf(whole.output),
    );
    expect(audit).toMatchObject({ duplicates: [], missing: [], steps: 12, stepsInOrder: true });
  }, 180_000);
});
