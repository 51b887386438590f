// `lorafleet train`: synchronous data parallel over a fleet of workers
// (DESIGN.md, "The step"). The fleet is one worker in this process (the
// default), N spawned `lorafleet-worker` processes (--workers N), or N external
// ones (--listen URL --expect N): one path for all three. The coordinator owns
// the sampler; each step it sends every ring member its shard of the global
// batch, collects StepDone, checks that the replicas stayed bitwise identical,
// commits, and records the step's samples in the ledger (loop.ts). Rank 0
// writes the checkpoints and the result; --resume continues from a checkpoint
// (checkpoints.ts). Faults: a lost worker aborts the step in flight, the ring
// re-forms without it and the step is replayed (recovery.ts).
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import { useBackend } from '@lorafleet/core';
import { WIRE_DTYPE_BYTES, encodeRunConfig, resultManifestSha256 } from '@lorafleet/worker';
import { UsageError } from '../args.js';
import { type RunObserver, observeRun, runFacts } from '../observe/observer.js';
import { EXIT_CODES, type Interrupt, onInterrupt } from '../training/interrupt.js';
import { claimRunDir } from '../training/run-dir.js';
import type { TrainOptions } from '../training/train-spec.js';
import { FleetCheckpointer, type StartPoint, mathConfig, resumePoint } from './checkpoints.js';
import { FleetError, type Membership, MembersLost, WorkerFleet } from './fleet.js';
import { type EvalResult, describeEval, heldOut, lossUnit } from './evaluation.js';
import { type RunContext, TIMEOUTS, trainLoop } from './loop.js';
import { curveFrom } from './membership.js';
import { spawnedGpus } from './default-gpus.js';
import { ElasticRing, withRecovery } from './recovery.js';
import { workerTable, writeSummary } from './report.js';
import { type RunPlan, planRun } from './run-plan.js';
import { describeRun, workerNoun } from './describe-run.js';
import { sharedGpuWarnings } from './shared-gpus.js';
import { BestModel } from '../training/best-model.js';
import { LrPlateau } from '../training/lr-plateau.js';
import { checkpointName, CHECKPOINTS_DIR } from '../training/checkpoint.js';

const log = (line: string) => console.log(line);
const warn = (line: string) => console.warn(`warning: ${line}`);

export async function runTraining(o: TrainOptions, membership: Membership): Promise<void> {
  // Options, the output folder and the dashboard's port first: a mistake there fails before anything loads.
  if (o.minWorkers > membership.workers) {
    throw new UsageError(
      `train: --min-workers ${o.minWorkers} is more than the ${membership.workers} workers`,
    );
  }
  if (membership.kind === 'inprocess' && o.stepTimeout !== undefined) {
    // Its hang would be ours: one event loop, nothing left to notice it.
    warn(
      '--step-timeout has no effect without --workers N or --listen: the worker runs in this process',
    );
  }
  const curve = curveFrom(o);
  const { gpus, line: gpusLine } = await spawnedGpus(o, membership);
  // The worker of a fleet of one computes in this process: open its backend
  // (and GPU) first, as lorafleet-worker does, so that a backend that cannot
  // start fails here, saying why, before any output folder or worker exists.
  if (membership.kind === 'inprocess') await useBackend(o.backend);
  await claimRunDir(o.out, { resume: o.resume !== undefined, overwrite: o.overwrite });
  const observer = await observeRun(o, o.out, o.resume !== undefined);
  const interrupt = onInterrupt();
  let fleet: WorkerFleet | undefined;
  try {
    const plan = await planRun(o);
    const math = await mathConfig(o, plan);
    const start = await resumePoint(o, plan, math, warn);
    describeRun(plan, membership, start);
    if (gpusLine) log(gpusLine);
    const runId = `run-${randomUUID()}`;
    observer.emit({ type: 'run', facts: facts(plan, membership, runId) });
    fleet = await WorkerFleet.start({
      membership,
      runId,
      backend: plan.backend,
      helloTimeoutMs: membership.kind === 'listen' ? o.joinTimeout * 1000 : TIMEOUTS.helloMs,
      heartbeatTimeoutMs: o.heartbeatTimeout * 1000,
      ...(o.stepTimeout !== undefined ? { stepTimeoutMs: o.stepTimeout * 1000 } : {}),
      maxRestarts: membership.kind === 'spawn' ? o.maxRestarts : 0,
      log: (line) => console.error(line),
      onEvent: (level, message) => observer.note(level, message),
      ...(curve ? { curve } : {}),
      gpus,
    });
    if (curve) {
      log(`CURVE on: ${curve.authorizedKeys.length} worker key(s) admitted; both planes encrypted`);
    }
    const ring = await formRing(o, fleet, plan, start, observer);
    log(
      `${fleet.active().length} ${workerNoun(fleet.active().length)} ready (control ${fleet.endpoint}, run ${runId})`,
    );
    noteSharedGpus(fleet, observer);
    interrupt.training();
    await trainOnFleet({
      o,
      fleet,
      ring,
      plan,
      out: o.out,
      start,
      observer,
      interrupt,
      checkpoints:
        plan.config.mode === 'lora'
          ? new FleetCheckpointer(fleet, o.out, plan, math, o.keepCheckpoints, TIMEOUTS.saveMs)
          : null,
      evaluate: heldOut(fleet, ring, plan, observer),
      ...evaluationTrackers(plan, start),
    });
  } catch (error) {
    observer.emit({ type: 'end', status: 'failed', message: (error as Error).message });
    throw error;
  } finally {
    interrupt.dispose();
    fleet?.close();
    await observer.close();
  }
}

/** What reads each evaluation: the best model and early stopping, the plateau's LR (from a checkpoint's state). */
function evaluationTrackers(plan: RunPlan, start: StartPoint) {
  const { bestModel, lrPlateau } = plan;
  return {
    best: bestModel && new BestModel(bestModel, start.bestModel, warn),
    plateau:
      lrPlateau &&
      new LrPlateau(
        lrPlateau.settings,
        lrPlateau.metric,
        plan.config.optimizer.lr,
        start.lrPlateau,
      ),
  };
}

/** Warns, on the console and in the event log, of workers of one host on one GPU. */
function noteSharedGpus(fleet: WorkerFleet, observer: RunObserver): void {
  for (const line of sharedGpuWarnings(fleet.active())) {
    warn(line);
    observer.note('warn', line);
  }
}

function facts(plan: RunPlan, membership: Membership, runId: string) {
  const { config } = plan;
  return runFacts(
    {
      runId,
      model: config.modelDir,
      mode: config.mode,
      totalParameters: plan.totalParameters,
      trainableParameters: plan.trainableParameters,
      lora:
        config.mode === 'full'
          ? null
          : {
              r: config.lora.r,
              alpha: config.lora.alpha,
              dropout: config.lora.dropout,
              targets: [config.lora.targets].flat(),
            },
      backend: plan.backend,
      workers: membership.workers,
      steps: plan.steps,
      batchSize: plan.batchSize,
      seqLen: config.rows.seqLen,
      ...(config.objective ? { lossUnit: lossUnit(config) } : {}),
    },
    WIRE_DTYPE_BYTES[config.wireDtype],
  );
}

/** Welcomes the first workers (generation 0; on a resume they load the checkpoint) and forms the ring. */
async function formRing(
  o: TrainOptions,
  fleet: WorkerFleet,
  plan: RunPlan,
  start: StartPoint,
  observer: RunObserver,
): Promise<ElasticRing> {
  const { runConfig, runConfigHash } = encodeRunConfig(plan.config);
  // Beyond the ring's size, early arrivals wait as standbys.
  const initial = fleet.newcomers().slice(0, fleet.capacity);
  const ringEndpoints = initial.map((m) => m.hello!.dataEndpoint);
  for (const [rank, m] of initial.entries()) {
    await fleet.send(m, {
      case: 'welcome',
      value: {
        rank,
        worldSize: initial.length,
        ringEndpoints,
        runConfigHash,
        runConfig,
        generation: 0,
        ringPublicKeys: fleet.ringPublicKeys(initial),
        joining: false,
      },
    });
    fleet.welcomed(m);
  }
  const loaded = () => initial.every((m) => m.status === 'ready' || m.status === 'lost');
  if (!(await fleet.waitFor(loaded, TIMEOUTS.readyMs))) {
    throw new FleetError(
      `timed out after ${TIMEOUTS.readyMs / 1000} s waiting for the workers to load their replicas`,
    );
  }
  const ring = new ElasticRing(fleet, {
    joinerWelcome: encodeRunConfig({ ...plan.config, resumeFrom: null }),
    minWorkers: o.minWorkers,
    joinTimeoutMs: o.joinTimeout * 1000,
    exchangeTimeoutMs: TIMEOUTS.saveMs,
    onEvent: (level, message) => {
      console.error(`coordinator: ${message}`);
      observer.note(level, message);
    },
  });
  ring.lastCheckpoint = start.resumed?.dir ?? null;
  const alive = initial.filter((m) => m.status === 'ready');
  fleet.setRing(alive);
  if (alive.length < initial.length) {
    // A worker died while loading: the others' Welcome ring is stale.
    await ring.recover(new MembersLost(initial.filter((m) => m.status === 'lost')), 0, start.step);
  }
  return ring;
}

/** Evaluates, trains, evaluates again, saves the result through rank 0 and reports. */
async function trainOnFleet(run: RunContext): Promise<void> {
  const { fleet, ring, plan, out, observer, interrupt } = run;
  const before = await run.evaluate(run.start.step);
  if (before) log(`eval loss before: ${describeEval(before, plan.config)}`);
  const result = await trainLoop(run);
  // A last step on the --eval-every schedule was evaluated in the loop.
  const after =
    result.lastEval?.step === result.done
      ? result.lastEval.result
      : await run.evaluate(result.done);
  if (after) log(`eval loss after:  ${describeEval(after, plan.config)}`);
  if (result.stoppedEarly) {
    const line = stoppedEarlyLine(run, result.done);
    log(line);
    observer.note('info', line);
  }
  const saved = join(out, plan.config.mode === 'full' ? 'model' : 'adapter');
  const savedStep = bestStep(run, result.done, after);
  await saveResult(
    run,
    result.done,
    saved,
    savedStep === result.done ? '' : resolve(out, CHECKPOINTS_DIR, checkpointName(savedStep)),
  );
  await fleet.stop('training finished', TIMEOUTS.exitMs);
  observer.emit({
    type: 'workers',
    generation: ring.generation,
    workers: workerTable(fleet, new Map()),
  });
  await writeSummary(out, plan, {
    ...result,
    // The ring at the end, not the workers that ever joined.
    workers: fleet.ringSizes.last,
    saved,
    faults: {
      workersLost: fleet.lostWorkers, // joiners lost before the ring took them count too
      workersJoined: ring.stats.joins,
      fewestWorkers: fleet.ringSizes.min,
      recoverySeconds: ring.stats.recoverySeconds,
    },
    evalLossBefore: before?.loss ?? null,
    evalLossAfter: after?.loss ?? null,
    savedStep,
    best: run.best?.bestStep ?? null,
  });
  const stopped = interrupt.signal;
  observer.emit({
    type: 'end',
    status: stopped ? 'interrupted' : 'finished',
    message: `${result.done} steps; saved ${saved}${savedStep === result.done ? '' : ` (step ${savedStep}'s, the best evaluated)`}`,
  });
  if (stopped) process.exitCode = EXIT_CODES[stopped];
}

/**
 * The step whose parameters become the result: the last one, or with
 * --load-best-model-at-end the best evaluated one (the final evaluation a
 * candidate too).
 */
function bestStep(run: RunContext, done: number, after: EvalResult | null): number {
  const best = run.best;
  if (!best?.settings.loadAtEnd) return done;
  if (after) best.candidate(done, after);
  return best.bestStep?.step ?? done;
}

function stoppedEarlyLine(run: RunContext, done: number): string {
  const { patience, threshold, metric } = run.best!.settings;
  const best = run.best!.bestStep!;
  return (
    `stopped early at step ${done} of ${run.plan.steps}: ${patience} evaluation${patience === 1 ? '' : 's'} ` +
    `in a row did not improve on the best held-out ${metric} (${best.value.toFixed(4)}, step ${best.step})` +
    (threshold > 0 ? ` by more than ${threshold}` : '') +
    ' (--early-stopping-patience)'
  );
}

/**
 * The adapter (or model), from rank 0, re-forming the ring if a worker is
 * lost meanwhile; `fromCheckpoint`: the adapter of that checkpoint folder
 * instead of the replicas' (the best step's).
 */
async function saveResult(
  run: RunContext,
  done: number,
  path: string,
  fromCheckpoint: string,
): Promise<void> {
  const { fleet, ring, plan } = run;
  await withRecovery(ring, done, async () => {
    const rank0 = fleet.memberOf(0);
    await fleet.send(rank0, {
      case: 'checkpointRequest',
      value: { step: done, path, fromCheckpoint },
    });
    const [saved] = await fleet.collect('checkpointDone', TIMEOUTS.saveMs, [rank0]);
    if (saved!.manifestSha256 !== (await resultManifestSha256(path, plan.config.mode))) {
      throw new FleetError(`${path}: what is on disk differs from what rank 0 wrote`);
    }
  });
}

export type { Interrupt };
