// `lorafleet train --workers N` (N > 1): synchronous data parallel over N
// local worker processes, or `--listen URL --expect N` over N external ones
// (DESIGN.md, "The step"). The coordinator owns the sampler; each step it
// sends every ring member its shard of the global batch, collects StepDone,
// checks that the replicas stayed bitwise identical, commits, and records the
// step's samples in the ledger. Rank 0 writes the checkpoints and the adapter;
// --resume continues from a checkpoint (checkpoints.ts). Faults (DESIGN.md,
// "Faults"): a lost worker aborts the step in flight, the ring re-forms
// without it and the step is replayed; lost local workers are respawned and
// join at a step boundary with the current state (recovery.ts).
import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lrFactor } from '@lorafleet/core';
import { LEDGER_FILE, SAMPLER_START, SampleLedger, shard } from '@lorafleet/data';
import type { StepDone } from '@lorafleet/protocol';
import { adapterManifestSha256, encodeRunConfig } from '@lorafleet/worker';
import { type Options, UsageError } from '../args.js';
import { formatCount } from '../common.js';
import { type RunObserver, observeRun, runFacts } from '../observe/observer.js';
import { Progress } from '../progress.js';
import { onInterrupt } from '../training/interrupt.js';
import { trimMetrics } from '../training/resume.js';
import { FleetCheckpointer, type StartPoint, mathConfig, resumePoint } from './checkpoints.js';
import { FleetError, type Member, type Membership, MembersLost, WorkerFleet } from './fleet.js';
import { curveFrom, gpusFrom } from './membership.js';
import { ElasticRing, withRecovery } from './recovery.js';
import { type EvalResult, describeEval, heldOut } from './evaluation.js';
import { type LoopResult, workerTable, writeSummary } from './report.js';
import { checkReplicas } from './replicas.js';
import { type RunPlan, planRun } from './run-plan.js';

/** Bounds on each wait; a worker that exits or reports an error fails the run at once. */
const TIMEOUTS = {
  helloMs: 60_000, // process start + imports
  readyMs: 600_000, // loading the model and data, PiSSA's SVD
  stepMs: 1_800_000, // one step of a large model on a slow backend
  saveMs: 300_000,
  exitMs: 30_000,
};

export async function runDistributedTrain(o: Options, membership: Membership): Promise<void> {
  const { workers } = membership;
  const log = (line: string) => console.log(line);
  const plan = await planRun(o);
  const { config, steps, batchSize, microBatchSize } = plan;
  const out = o.string('out');
  const math = await mathConfig(o, plan);
  const start = await resumePoint(o, plan, math, (w) => console.warn(`warning: ${w}`));
  if (start.resumed) log(`resuming from ${start.resumed.dir} at step ${start.step}`);
  plan.warnings.forEach((w) => console.warn(`warning: ${w}`));
  log(`data: ${config.dataFile}: ${plan.dataDescription}`);
  if (config.evalData) log(`eval data: ${config.evalData.file}: ${plan.evalDescription}`);
  log(
    `model: ${config.modelDir} (${formatCount(plan.totalParameters)} parameters, context ${plan.modelConfig.nPositions}, ` +
      `vocab ${plan.modelConfig.vocabSize}) on ${workers} workers (${plan.backend})`,
  );
  log(
    `training: LoRA r=${config.lora.r} alpha=${config.lora.alpha} on ${config.lora.targets.join(', ')}, ` +
      `${formatCount(plan.trainableParameters)} trainable parameters ` +
      `(${((100 * plan.trainableParameters) / plan.totalParameters).toFixed(2)}% of ${formatCount(plan.totalParameters)})`,
  );
  log(
    `${steps} steps of ${batchSize} rows x ${config.rows.seqLen} tokens ` +
      `(${(steps / plan.sampler.stepsPerEpoch).toFixed(2)} epochs), ~${Math.ceil(batchSize / workers)} rows per worker, ` +
      `micro-batches of ${microBatchSize}`,
  );
  const curve = curveFrom(o);
  const gpus = gpusFrom(o, membership, plan.backend);
  const minWorkers = o.number('min-workers');
  if (minWorkers > workers) {
    throw new UsageError(`train: --min-workers ${minWorkers} is more than the ${workers} workers`);
  }
  await mkdir(out, { recursive: true });
  const runId = `run-${randomUUID()}`;
  const observer = await observeRun(o, out, start.resumed !== null);
  observer.emit({
    type: 'run',
    facts: runFacts({
      runId,
      model: config.modelDir,
      mode: 'lora',
      totalParameters: plan.totalParameters,
      trainableParameters: plan.trainableParameters,
      lora: {
        r: config.lora.r,
        alpha: config.lora.alpha,
        dropout: config.lora.dropout,
        targets: config.lora.targets,
      },
      backend: plan.backend,
      workers,
      steps,
      batchSize,
      seqLen: config.rows.seqLen,
    }),
  });
  let fleet: WorkerFleet | undefined;
  try {
    fleet = await WorkerFleet.start({
      membership,
      runId,
      backend: plan.backend,
      helloTimeoutMs:
        membership.kind === 'listen' ? o.number('join-timeout') * 1000 : TIMEOUTS.helloMs,
      heartbeatTimeoutMs: o.number('heartbeat-timeout') * 1000,
      maxRestarts: o.number('max-restarts'),
      log: (line) => console.error(line),
      onEvent: (level, message) => observer.note(level, message),
      ...(curve ? { curve } : {}),
      gpus,
    });
    if (curve) {
      log(`CURVE on: ${curve.authorizedKeys.length} worker key(s) admitted; both planes encrypted`);
    }
    await trainOnFleet(o, fleet, plan, out, math, start, observer, runId, minWorkers);
  } catch (error) {
    observer.emit({ type: 'end', status: 'failed', message: (error as Error).message });
    throw error;
  } finally {
    fleet?.close();
    await observer.close();
  }
}

async function trainOnFleet(
  o: Options,
  fleet: WorkerFleet,
  plan: RunPlan,
  out: string,
  math: Record<string, unknown>,
  start: StartPoint,
  observer: RunObserver,
  runId: string,
  minWorkers: number,
): Promise<void> {
  const { config } = plan;
  const { runConfig, runConfigHash } = encodeRunConfig(config);
  // Initial workers get their ring in Welcome (generation 0) and, on a resume, the checkpoint.
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
  const ready = await fleet.waitFor(
    () => initial.every((m) => m.status === 'ready' || m.status === 'lost'),
    TIMEOUTS.readyMs,
  );
  if (!ready) {
    throw new FleetError(
      `timed out after ${TIMEOUTS.readyMs / 1000} s waiting for the workers to load their replicas`,
    );
  }
  const ring = new ElasticRing(fleet, {
    joinerWelcome: encodeRunConfig({ ...config, resumeFrom: null }),
    minWorkers,
    joinTimeoutMs: o.number('join-timeout') * 1000,
    exchangeTimeoutMs: TIMEOUTS.saveMs,
    onEvent: (level, message) => {
      console.error(`coordinator: ${message}`);
      observer.note(level, message);
    },
  });
  const alive = initial.filter((m) => m.status === 'ready');
  fleet.setRing(alive);
  if (alive.length < initial.length) {
    // A worker died while loading: the others' Welcome ring is stale.
    await ring.recover(new MembersLost(initial.filter((m) => m.status === 'lost')), 0, start.step);
  }
  log(`${fleet.active().length} workers ready (control ${fleet.endpoint}, run ${runId})`);
  const checkpoints = new FleetCheckpointer(
    fleet,
    out,
    plan,
    math,
    o.number('keep-checkpoints'),
    TIMEOUTS.saveMs,
  );
  const every = o.number('checkpoint-every');
  const evaluate = heldOut(fleet, ring, plan, observer);
  const before = await evaluate(start.step);
  if (before) log(`eval loss before: ${describeEval(before)}`);
  const result = await trainLoop(
    fleet,
    ring,
    plan,
    out,
    start,
    observer,
    every,
    checkpoints,
    evaluate,
  );
  const after = await evaluate(result.done);
  if (after) log(`eval loss after:  ${describeEval(after)}`);
  // The adapter, from rank 0 (re-forming the ring if a worker is lost meanwhile).
  const savedTo = join(out, 'adapter');
  await withRecovery(ring, result.done, async () => {
    await fleet.send(0, { case: 'checkpointRequest', value: { step: result.done, path: savedTo } });
    const [saved] = await fleet.collect('checkpointDone', TIMEOUTS.saveMs, [0]);
    if (saved!.manifestSha256 !== (await adapterManifestSha256(savedTo))) {
      throw new FleetError(`${savedTo}: the adapter on disk differs from what rank 0 wrote`);
    }
  });
  await fleet.stop('training finished', TIMEOUTS.exitMs);
  observer.emit({
    type: 'workers',
    generation: ring.generation,
    workers: workerTable(fleet, new Map()),
  });
  const faults = {
    workersLost: ring.stats.losses,
    workersJoined: ring.stats.joins,
    fewestWorkers: fleet.ringSizes.min,
    recoverySeconds: ring.stats.recoverySeconds,
  };
  await writeSummary(out, plan, {
    ...result,
    workers: fleet.ringSizes.last,
    saved: savedTo,
    faults,
    evalLossBefore: before?.loss ?? null,
    evalLossAfter: after?.loss ?? null,
  });
  observer.emit({
    type: 'end',
    status: result.interrupted ? 'interrupted' : 'finished',
    message: `${result.done} steps; saved ${savedTo}`,
  });
  if (result.interrupted) process.exitCode = 130;
}

const log = (line: string) => console.log(line);

async function trainLoop(
  fleet: WorkerFleet,
  ring: ElasticRing,
  plan: RunPlan,
  out: string,
  start: StartPoint,
  observer: RunObserver,
  checkpointEvery: number,
  checkpoints: FleetCheckpointer,
  evaluate: (done: number) => Promise<EvalResult | null>,
): Promise<LoopResult> {
  const { config, sampler, steps, microBatchSize } = plan;
  const metricsPath = join(out, 'metrics.jsonl');
  if (start.resumed) await trimMetrics(metricsPath, start.step);
  else await writeFile(metricsPath, '');
  const ledger = new SampleLedger(join(out, LEDGER_FILE), start.resumed ? start.step : 0);
  const interrupt = onInterrupt();
  const progress = new Progress({ label: 'train', total: steps });
  const started = performance.now();
  // Time spent evaluating, left out of tokens/s.
  let evalSeconds = 0;
  const losses: number[] = [];
  let state = start.sampler ?? SAMPLER_START;
  let tokens = 0;
  let done = start.step;
  let lastCheckpoint = start.step;
  const timings = new Map<Member, { computeMs: number; allReduceMs: number; waitMs: number }>();
  const emitWorkers = () =>
    observer.emit({
      type: 'workers',
      generation: ring.generation,
      workers: workerTable(fleet, timings),
    });
  try {
    while (done < steps && !interrupt.requested) {
      const step = done + 1;
      try {
        await ring.boundary(done);
        const members = fleet.active();
        const planned = sampler.plan(state);
        const t0 = performance.now();
        for (const [rank, m] of members.entries()) {
          await fleet.send(m, {
            case: 'stepPlan',
            value: { step, sampleIds: shard(planned.ids, rank, members.length), microBatchSize },
          });
        }
        const reports = await fleet.collect('stepDone', TIMEOUTS.stepMs, members);
        const wallMs = performance.now() - t0;
        checkReplicas(step, reports);
        await fleet.broadcast({ case: 'commit', value: { step } }, members);
        ledger.append(step, planned.epoch, planned.ids);
        state = planned.next;
        done = step;
        // Loss from the reduced sums: every rank's loss sum over every rank's tokens.
        const stepTokens = reports.reduce((n, r) => n + r.tokenCount, 0);
        const loss = reports.reduce((s, r) => s + r.lossSum, 0) / stepTokens;
        const gradNorm = reports[0]!.gradNorm;
        tokens += stepTokens;
        losses.push(loss);
        const seconds = (performance.now() - started) / 1000;
        // Training time so far (this step's evaluation, if any, comes after).
        const trainSeconds = seconds - evalSeconds;
        reports.forEach((r, rank) => {
          const t = r.timings;
          timings.set(members[rank]!, {
            computeMs: t.computeMs,
            allReduceMs: t.allreduceMs,
            waitMs: Math.max(0, wallMs - t.computeMs - t.allreduceMs - t.updateMs),
          });
        });
        const max = (f: (r: StepDone) => number) => Math.max(...reports.map(f)) / 1000;
        const allReduceShare =
          reports.reduce((s, r) => {
            const t = r.timings;
            return s + t.allreduceMs / Math.max(1e-9, t.computeMs + t.allreduceMs + t.updateMs);
          }, 0) / reports.length;
        const lr = config.optimizer.lr * lrFactor(config.schedule, step - 1);
        const line: Record<string, unknown> = {
          step,
          epoch: planned.epoch,
          loss,
          lr,
          tokens: stepTokens,
          gradNorm,
          seconds,
          workers: members.length,
          computeSeconds: max((r) => r.timings.computeMs),
          allReduceSeconds: max((r) => r.timings.allreduceMs),
          allReduceShare,
          ...(Number.isFinite(gradNorm) ? {} : { skipped: 'non-finite gradient' }),
        };
        if (plan.evalEvery > 0 && done % plan.evalEvery === 0 && done < steps) {
          const t0 = performance.now();
          const e = await evaluate(done);
          evalSeconds += (performance.now() - t0) / 1000;
          if (e) line.evalLoss = e.loss;
        }
        await appendFile(metricsPath, JSON.stringify(line) + '\n');
        observer.emit({
          type: 'step',
          step,
          epoch: planned.epoch,
          loss,
          lr,
          tokens: stepTokens,
          tokensPerSecond: tokens / trainSeconds,
          gradNorm,
          seconds,
        });
        emitWorkers();
        progress.update(done, {
          loss: loss.toFixed(4),
          lr: lr.toExponential(2),
          'tok/s': (tokens / trainSeconds).toFixed(0),
          workers: String(members.length),
          allreduce: `${(100 * allReduceShare).toFixed(0)}%`,
          ...(typeof line.evalLoss === 'number' ? { eval: line.evalLoss.toFixed(4) } : {}),
        });
        // Every K steps, and at the end (interrupted or not), as with one worker.
        if (
          (checkpointEvery > 0 && done % checkpointEvery === 0) ||
          done === steps ||
          interrupt.requested
        ) {
          await saveCheckpoint();
        }
      } catch (error) {
        if (!(error instanceof MembersLost)) throw error;
        emitWorkers();
        await ring.recover(error, done + 1, done);
        emitWorkers();
        if (lastCheckpoint < done && checkpointEvery > 0 && done % checkpointEvery === 0) {
          await withRecovery(ring, done, saveCheckpoint);
        }
      }
    }
    if (done > lastCheckpoint) await withRecovery(ring, done, saveCheckpoint);
  } finally {
    ledger.close();
    progress.finish();
    interrupt.dispose();
  }

  async function saveCheckpoint(): Promise<void> {
    if (lastCheckpoint === done) return;
    // The ledger reaches the disk before the checkpoint that covers it.
    ledger.sync();
    const path = await checkpoints.save(done, state, start.tokensSeen + tokens);
    lastCheckpoint = done;
    observer.emit({ type: 'checkpoint', step: done, path });
  }

  const seconds = (performance.now() - started) / 1000 - evalSeconds;
  return {
    done,
    interrupted: interrupt.requested,
    losses,
    tokens,
    tokensSeen: start.tokensSeen + tokens,
    sampler: state,
    seconds,
  };
}
