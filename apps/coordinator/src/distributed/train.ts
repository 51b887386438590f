// `lorafleet train --workers N` (N > 1): synchronous data parallel over N
// local worker processes, or `--listen URL --expect N` over N external ones
// (DESIGN.md, "The step"). The coordinator owns the
// sampler; each step it sends every rank its shard of the global batch,
// collects StepDone, checks that the replicas stayed bitwise identical and
// commits. Rank 0 writes the checkpoints (every --checkpoint-every steps and at
// the end) and the adapter; --resume continues from a checkpoint (checkpoints.ts).
// No fault tolerance yet: any worker failure, exit or timeout fails the run
// with a message naming it.
import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lrFactor } from '@lorafleet/core';
import { SAMPLER_START, type SamplerState, shard } from '@lorafleet/data';
import type { StepDone } from '@lorafleet/protocol';
import { adapterManifestSha256, encodeRunConfig } from '@lorafleet/worker';
import type { Options } from '../args.js';
import { formatCount } from '../common.js';
import { Progress } from '../progress.js';
import { trimMetrics } from '../training/resume.js';
import { FleetCheckpointer, type StartPoint, mathConfig, resumePoint } from './checkpoints.js';
import { FleetError, type Membership, WorkerFleet } from './fleet.js';
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
  await mkdir(out, { recursive: true });
  const runId = `run-${randomUUID()}`;
  const fleet = await WorkerFleet.start({
    membership,
    runId,
    backend: plan.backend,
    helloTimeoutMs:
      membership.kind === 'listen' ? o.number('join-timeout') * 1000 : TIMEOUTS.helloMs,
    log: (line) => console.error(line),
  });
  try {
    const { runConfig, runConfigHash } = encodeRunConfig(config);
    const ringEndpoints = fleet.hellos().map((h) => h.dataEndpoint);
    for (let rank = 0; rank < workers; rank++) {
      await fleet.send(rank, {
        case: 'welcome',
        value: {
          rank,
          worldSize: workers,
          ringEndpoints,
          runConfigHash,
          runConfig,
          generation: 0,
          ringPublicKeys: [],
          joining: false,
        },
      });
    }
    await fleet.collect('heartbeat', TIMEOUTS.readyMs);
    log(`${workers} workers ready (control ${fleet.endpoint}, run ${runId})`);
    const checkpoints = new FleetCheckpointer(
      fleet,
      out,
      plan,
      math,
      o.number('keep-checkpoints'),
      TIMEOUTS.saveMs,
    );
    const every = o.number('checkpoint-every');
    let lastCheckpoint = start.step;
    const result = await trainLoop(fleet, plan, out, start, async (done, sampler, tokensSeen) => {
      if (every > 0 && done % every === 0) {
        await checkpoints.save(done, sampler, tokensSeen);
        lastCheckpoint = done;
      }
    });
    // And at the end, interrupted or not (as with one worker).
    if (result.done > lastCheckpoint)
      await checkpoints.save(result.done, result.sampler, result.tokensSeen);
    const savedTo = join(out, 'adapter');
    await fleet.send(0, { case: 'checkpointRequest', value: { step: result.done, path: savedTo } });
    const [saved] = await fleet.collect('checkpointDone', TIMEOUTS.saveMs, [0]);
    if (saved!.manifestSha256 !== (await adapterManifestSha256(savedTo))) {
      throw new FleetError(`${savedTo}: the adapter on disk differs from what rank 0 wrote`);
    }
    await fleet.stop('training finished', TIMEOUTS.exitMs);
    await writeSummary(out, plan, { ...result, workers, saved: savedTo });
    if (result.interrupted) process.exitCode = 130;
  } finally {
    fleet.close();
  }
}

interface LoopResult {
  done: number;
  interrupted: boolean;
  losses: number[];
  /** Tokens trained on by this invocation. */
  tokens: number;
  /** Tokens since the run's first step (a resumed run counts the checkpoint's). */
  tokensSeen: number;
  sampler: SamplerState;
  seconds: number;
}

/** Called after each committed step, for checkpoints. */
type AfterStep = (done: number, sampler: SamplerState, tokensSeen: number) => Promise<void>;

async function trainLoop(
  fleet: WorkerFleet,
  plan: RunPlan,
  out: string,
  start: StartPoint,
  afterStep: AfterStep,
): Promise<LoopResult> {
  const { config, sampler, steps, microBatchSize } = plan;
  const metricsPath = join(out, 'metrics.jsonl');
  if (start.resumed) await trimMetrics(metricsPath, start.step);
  else await writeFile(metricsPath, '');
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(
      '\ninterrupted: finishing this step and saving; press Ctrl-C again to quit at once',
    );
  };
  process.on('SIGINT', onSignal);
  const progress = new Progress({ label: 'train', total: steps });
  const started = performance.now();
  const losses: number[] = [];
  let state = start.sampler ?? SAMPLER_START;
  let tokens = 0;
  let done = start.step;
  try {
    for (let step = start.step + 1; step <= steps && !interrupted; step++) {
      const planned = sampler.plan(state);
      for (let rank = 0; rank < fleet.size; rank++) {
        await fleet.send(rank, {
          case: 'stepPlan',
          value: { step, sampleIds: shard(planned.ids, rank, fleet.size), microBatchSize },
        });
      }
      const reports = await fleet.collect('stepDone', TIMEOUTS.stepMs);
      checkReplicas(step, reports);
      await fleet.broadcast({ case: 'commit', value: { step } });
      state = planned.next;
      done = step;
      // Loss from the reduced sums: every rank's loss sum over every rank's tokens.
      const stepTokens = reports.reduce((n, r) => n + r.tokenCount, 0);
      const loss = reports.reduce((s, r) => s + r.lossSum, 0) / stepTokens;
      const gradNorm = reports[0]!.gradNorm;
      tokens += stepTokens;
      losses.push(loss);
      const seconds = (performance.now() - started) / 1000;
      const max = (f: (r: StepDone) => number) => Math.max(...reports.map(f)) / 1000;
      const allReduceShare =
        reports.reduce((s, r) => {
          const t = r.timings;
          return s + t.allreduceMs / Math.max(1e-9, t.computeMs + t.allreduceMs + t.updateMs);
        }, 0) / reports.length;
      const lr = config.optimizer.lr * lrFactor(config.schedule, step - 1);
      const line = {
        step,
        epoch: planned.epoch,
        loss,
        lr,
        tokens: stepTokens,
        gradNorm,
        seconds,
        computeSeconds: max((r) => r.timings.computeMs),
        allReduceSeconds: max((r) => r.timings.allreduceMs),
        allReduceShare,
        ...(Number.isFinite(gradNorm) ? {} : { skipped: 'non-finite gradient' }),
      };
      await appendFile(metricsPath, JSON.stringify(line) + '\n');
      progress.update(done, {
        loss: loss.toFixed(4),
        lr: lr.toExponential(2),
        'tok/s': (tokens / seconds).toFixed(0),
        allreduce: `${(100 * allReduceShare).toFixed(0)}%`,
      });
      await afterStep(done, state, start.tokensSeen + tokens);
    }
  } finally {
    progress.finish();
    process.off('SIGINT', onSignal);
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    done,
    interrupted,
    losses,
    tokens,
    tokensSeen: start.tokensSeen + tokens,
    sampler: state,
    seconds,
  };
}

async function writeSummary(
  out: string,
  plan: RunPlan,
  r: LoopResult & { workers: number; saved: string },
): Promise<void> {
  const head = r.losses.slice(0, Math.min(10, r.losses.length));
  const tail = r.losses.slice(-Math.min(10, r.losses.length));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const summary = {
    model: plan.config.modelDir,
    mode: 'lora',
    steps: r.done,
    interrupted: r.interrupted,
    trainLossFirst10: mean(head),
    trainLossLast10: mean(tail),
    evalLossBefore: null,
    evalLossAfter: null,
    trainableParameters: plan.trainableParameters,
    totalParameters: plan.totalParameters,
    tokens: r.tokensSeen,
    seconds: r.seconds,
    tokensPerSecond: r.tokens / r.seconds,
    backend: plan.backend,
    workers: r.workers,
    saved: r.saved,
  };
  await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  console.log(
    `done${r.interrupted ? ' (interrupted)' : ''}: ${r.done} steps on ${r.workers} workers in ${r.seconds.toFixed(1)} s, ` +
      `${summary.tokensPerSecond.toFixed(0)} tokens/s; train loss ${summary.trainLossFirst10.toFixed(4)} ` +
      `(first ${head.length} steps) -> ${summary.trainLossLast10.toFixed(4)} (last ${tail.length})`,
  );
  console.log(`saved adapter (PEFT layout): ${r.saved}; metrics: ${join(out, 'metrics.jsonl')}`);
}
