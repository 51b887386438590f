// A worker's whole life in a data-parallel run (DESIGN.md, "The step" and
// "Faults"): Hello -> Welcome -> build the replica -> ready (first heartbeat;
// then one a second) -> for each StepPlan: train its share, all-reduce over
// the ring, StepDone; Commit, or Abort (restore the step-start snapshot);
// Regroup re-forms the ring after a loss or a join; StateRequest/TrainerState
// hand the adapter + optimizer state to a joining worker; save the adapter or
// a checkpoint on CheckpointRequest; leave on Shutdown. A resumed run's
// replicas load the checkpoint named in the RunConfig before step one.
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import type { RingAllReduce } from '@lorafleet/collective';
import { type BackendName, deviceName, useBackend } from '@lorafleet/core';
import type { ControlBody, StepDone, StepPlan, Welcome, WorkerState } from '@lorafleet/protocol';
import { isCheckpointInProgress } from './checkpoint.js';
import { maybeCorruptReplica, maybeDelayStep } from './fault-injection.js';
import { CoordinatorLink, type LinkCurve, UNASSIGNED_RUN } from './coordinator-link.js';
import { Mailbox, bindRing, stepOrAbort } from './mailbox.js';
import { Replica } from './replica.js';
import { RING_DTYPE, RunConfigError, type WireDtypeName, decodeRunConfig } from './run-config.js';
import { batchesOf } from './rows.js';
import type { ComputeNotice, TrainState } from './step.js';
import {
  StateAssembler,
  decodeTrainState,
  encodeTrainState,
  stateParts,
} from './state-transfer.js';

export interface WorkerOptions {
  /** The coordinator's ROUTER endpoint, tcp://HOST:PORT. */
  coordinator: string;
  backend: BackendName;
  /** Longest silence from the coordinator before this worker gives up. */
  timeoutMs: number;
  /** Address the ring socket listens on and advertises to the other ranks. */
  ringHost: string;
  log: (line: string) => void;
  /** CURVE on both planes; the coordinator must run with --curve-key too. */
  curve?: LinkCurve;
  /** Join only runs whose gradients travel in this type (`--wire-dtype`); absent: any. */
  wireDtype?: WireDtypeName;
}

/** Runs one worker until the coordinator shuts it down; throws on any failure. */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const { log } = options;
  // The ring's socket can only be bound once Welcome gives our rank, but Hello
  // must already say where it will listen: reserve a free port now, bind it then.
  const dataEndpoint = `tcp://${options.ringHost}:${await freePort(options.ringHost)}`;
  const link = new CoordinatorLink(options.coordinator, options.timeoutMs, log, options.curve);
  try {
    await link.send({
      case: 'hello',
      value: {
        workerId: `${hostname()}:${process.pid}`,
        host: hostname(),
        pid: process.pid,
        device: deviceName(),
        backend: options.backend,
        capabilities: [],
        dataEndpoint,
        curvePublicKey: options.curve?.keyPair.publicKey ?? '',
      },
    });
    const welcome = await awaitWelcome(link);
    if (!welcome) return;
    try {
      await serve(link, welcome, dataEndpoint, options);
    } catch (error) {
      const code = error instanceof RunConfigError ? 'config-mismatch' : 'internal';
      await link.sendError(code, `rank ${welcome.value.rank}: ${(error as Error).message}`);
      throw error;
    }
  } finally {
    link.close();
  }
}

type WelcomeMessage = { runId: string; value: Welcome };

async function awaitWelcome(link: CoordinatorLink): Promise<WelcomeMessage | undefined> {
  for (;;) {
    const msg = await link.receive(`Welcome (after Hello to ${link.endpoint})`);
    const { body } = msg;
    if (body.case === 'welcome') return { runId: msg.runId, value: body.value };
    if (body.case === 'shutdown') return undefined;
    if (body.case === 'error') throw new Error(`the coordinator refused us: ${body.value.message}`);
    // Heartbeats (and anything else) before Welcome carry nothing for us.
  }
}

async function serve(
  link: CoordinatorLink,
  welcome: WelcomeMessage,
  dataEndpoint: string,
  options: WorkerOptions,
): Promise<void> {
  const { runId } = welcome;
  if (runId === UNASSIGNED_RUN) throw new Error(`Welcome without a run id`);
  link.joinRun(runId);
  const w = welcome.value;
  if (!w.joining && w.ringEndpoints[w.rank] !== dataEndpoint) {
    throw new Error(
      `Welcome lists ${w.ringEndpoints[w.rank]} for rank ${w.rank}, but this worker listens on ${dataEndpoint}`,
    );
  }
  const config = decodeRunConfig(w.runConfig, w.runConfigHash);
  if (options.wireDtype && options.wireDtype !== config.wireDtype) {
    throw new RunConfigError(
      `this worker runs with --wire-dtype ${options.wireDtype}, but run ${runId} sends gradients in ` +
        `${config.wireDtype} (train --wire-dtype): every rank must use the run's; start the worker ` +
        `with --wire-dtype ${config.wireDtype}, or without it to follow the run`,
    );
  }
  const wireDtype = RING_DTYPE[config.wireDtype];
  const mailbox = new Mailbox(link);
  // One send at a time on the socket: heartbeats interleave with replies.
  let sending: Promise<void> = Promise.resolve();
  const send = (body: ControlBody): Promise<void> => {
    const sent = sending.then(() => link.send(body));
    sending = sent.catch(() => undefined);
    return sent;
  };
  let rank = w.rank;
  let ring: RingAllReduce | undefined;
  let generation = w.generation;
  let ringStep = 0;
  // Chunks carry the ring's generation (and the run id, the generation too for
  // older peers' logs): frames of an aborted attempt or an older ring are dropped.
  const allReduce = (buffer: Float32Array) => {
    if (!ring) throw new Error(`rank ${rank}: no ring (the step was aborted or awaits a Regroup)`);
    return ring.allReduce(buffer, {
      step: ringStep,
      runId: `${runId}/g${generation}`,
      generation,
      wireDtype,
    });
  };
  const formRing = async (
    r: number,
    worldSize: number,
    endpoints: string[],
    gen: number,
    publicKeys: string[],
  ) => {
    ring?.close();
    ring = undefined;
    if (endpoints[r] !== dataEndpoint) {
      throw new Error(
        `the ring lists ${endpoints[r]} for rank ${r}, but this worker listens on ${dataEndpoint}`,
      );
    }
    if (options.curve && publicKeys.length !== worldSize) {
      throw new Error(
        `the coordinator sent ${publicKeys.length} ring public keys for ${worldSize} ranks: does it run with --curve-key?`,
      );
    }
    ring = await bindRing({
      rank: r,
      worldSize,
      listen: dataEndpoint,
      timeoutMs: config.ringTimeoutMs,
      ...(options.curve && { curve: { keyPair: options.curve.keyPair, publicKeys } }),
    });
    ring.connect(endpoints);
    rank = r;
    generation = gen;
  };
  let replica: Replica | undefined;
  let state: WorkerState = 'idle';
  let heartbeat: NodeJS.Timeout | undefined;
  try {
    if (!w.joining)
      await formRing(w.rank, w.worldSize, w.ringEndpoints, w.generation, w.ringPublicKeys);
    await useBackend(options.backend);
    replica = await Replica.build(config, allReduce);
    if (config.resumeFrom) await replica.restore(config.resumeFrom);
    const r = replica;
    options.log(
      (w.joining
        ? `joiner (pid ${process.pid}) of run ${runId}`
        : `rank ${rank}/${w.worldSize} (pid ${process.pid}) of run ${runId}`) +
        `: ${r.rows.length} rows, ${r.step.params.size} trainable parameters on ${options.backend}` +
        (config.resumeFrom ? `, resumed at step ${r.step.stepsDone}` : '') +
        '; ready',
    );
    // While a micro-batch blocks the event loop no heartbeat can leave: say so first.
    let quietMs = 0;
    const beat = () =>
      send({
        case: 'heartbeat',
        value: {
          sentAtMs: Date.now(),
          state,
          rssBytes: process.memoryUsage.rss(),
          stepsDone: r.step.stepsDone,
          quietMs,
        },
      }).catch(() => undefined);
    const onCompute = async (ms: number) => {
      if (ms === quietMs) return;
      quietMs = ms;
      await beat();
    };
    // "Ready": the first heartbeat; then one a second, also while a step computes.
    await beat();
    heartbeat = setInterval(() => void beat(), WORKER_HEARTBEAT_MS);
    let snapshot: TrainState | undefined;
    const assembler = new StateAssembler();
    for (;;) {
      const { body } = await mailbox.next(`the next step plan (${r.step.stepsDone} done)`);
      switch (body.case) {
        case 'stepPlan': {
          snapshot = r.step.snapshot();
          ringStep = body.value.step;
          state = 'computing';
          const outcome = await stepOrAbort(
            mailbox,
            (signal) => trainStep(r, body.value, rank, options.log, signal, onCompute),
            () => {
              // Unblocks an all-reduce waiting on a lost peer.
              ring?.close();
              ring = undefined;
            },
          );
          state = 'idle';
          if (outcome.kind === 'done') await send({ case: 'stepDone', value: outcome.value });
          else if (outcome.kind === 'failed') throw outcome.error;
          // 'aborted': the Abort (or Shutdown) waits in the mailbox.
          break;
        }
        case 'commit':
          if (body.value.step !== r.step.stepsDone) {
            throw new Error(
              `Commit of step ${body.value.step}, but this replica is at ${r.step.stepsDone}`,
            );
          }
          snapshot = undefined;
          break;
        case 'abort':
          if (snapshot) r.step.restore(snapshot);
          snapshot = undefined;
          ring?.close();
          ring = undefined;
          options.log(
            `rank ${rank}: step ${body.value.step} aborted (${body.value.reason}); back at step ${r.step.stepsDone}`,
          );
          break;
        case 'regroup': {
          const g = body.value;
          if (g.step !== r.step.stepsDone) {
            throw new Error(
              `Regroup at step ${g.step}, but this replica is at ${r.step.stepsDone}`,
            );
          }
          await formRing(g.rank, g.worldSize, g.ringEndpoints, g.generation, g.ringPublicKeys);
          options.log(
            `rank ${rank}/${g.worldSize}: ring generation ${g.generation} at step ${g.step}`,
          );
          await send({
            case: 'regrouped',
            value: {
              generation: g.generation,
              step: r.step.stepsDone,
              replicaHash: r.step.parameterHash(),
            },
          });
          break;
        }
        case 'stateRequest': {
          if (snapshot || body.value.step !== r.step.stepsDone) {
            throw new Error(
              `StateRequest for step ${body.value.step}, but this replica is at ${r.step.stepsDone}` +
                (snapshot ? ' with a step not yet committed' : ''),
            );
          }
          const bytes = encodeTrainState(r.step.snapshot());
          for (const part of stateParts(r.step.stepsDone, bytes)) {
            await send({ case: 'trainerState', value: part });
          }
          break;
        }
        case 'trainerState': {
          const complete = assembler.add(body.value);
          if (complete) {
            r.step.restore(decodeTrainState(complete.bytes, r.step.params.size));
            if (r.step.stepsDone !== complete.step) {
              throw new Error(
                `trainer state says step ${complete.step}, but holds ${r.step.stepsDone}`,
              );
            }
            options.log(
              `loaded the trainer state of step ${complete.step} (${complete.bytes.byteLength} bytes)`,
            );
          }
          break;
        }
        case 'evalRequest': {
          const { step, rowIds, batchSize } = body.value;
          if (snapshot || step !== r.step.stepsDone) {
            throw new Error(
              `EvalRequest at step ${step}, but this replica is at ${r.step.stepsDone}` +
                (snapshot ? ' with a step not yet committed' : ''),
            );
          }
          const { lossSum, tokens } = await r.evaluate(rowIds, batchSize, onCompute);
          await send({ case: 'evalDone', value: { step, lossSum, tokenCount: tokens } });
          break;
        }
        case 'checkpointRequest': {
          const { step, path } = body.value;
          if (step !== r.step.stepsDone) {
            throw new Error(
              `CheckpointRequest for step ${step}, but this replica is at ${r.step.stepsDone}`,
            );
          }
          state = 'checkpointing';
          // A folder the coordinator started with trainer_state.json is a
          // training checkpoint; any other path gets the final PEFT adapter.
          const manifestSha256 = (await isCheckpointInProgress(path))
            ? await r.writeCheckpoint(path)
            : await r.saveResult(path);
          state = 'idle';
          await send({ case: 'checkpointDone', value: { step, path, manifestSha256 } });
          break;
        }
        case 'shutdown':
          return;
        case 'error':
          throw new Error(`the coordinator stopped the run: ${body.value.message}`);
        case 'heartbeat':
          break;
        default:
          options.log(`rank ${rank}: ignored an unexpected ${body.case}`);
      }
    }
  } finally {
    clearInterval(heartbeat);
    await sending;
    mailbox.close();
    ring?.close();
    replica?.dispose();
  }
}

const WORKER_HEARTBEAT_MS = 1000;

/** One step on this rank's share of the global batch; the StepDone it reports. */
async function trainStep(
  replica: Replica,
  plan: StepPlan,
  rank: number,
  log: (line: string) => void,
  signal: AbortSignal,
  onCompute: ComputeNotice,
): Promise<StepDone> {
  const expected = replica.step.stepsDone + 1;
  if (plan.step !== expected) {
    throw new Error(`StepPlan for step ${plan.step}, but this replica's next step is ${expected}`);
  }
  const seqLen = replica.config.rows.seqLen;
  const batches = batchesOf(replica.rowsOf(plan.sampleIds), plan.microBatchSize, seqLen);
  await maybeDelayStep(signal);
  const result = await replica.step.run(batches, signal, onCompute);
  if (maybeCorruptReplica(replica.step, rank)) {
    log(`rank ${rank}: test hook: corrupted one parameter after step ${result.step}`);
  }
  return {
    step: result.step,
    lossSum: result.local.lossSum,
    tokenCount: result.local.tokens,
    timings: {
      computeMs: result.timings.compute * 1000,
      allreduceMs: result.timings.allReduce * 1000,
      updateMs: result.timings.update * 1000,
    },
    replicaHash: replica.step.parameterHash(),
    gradNorm: result.gradNorm,
    nonFiniteParameters: replica.step.nonFiniteParameters(),
  };
}

/** A TCP port free on `host` right now (the kernel's pick). */
async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') {
    throw new Error(`cannot find a free port on ${host}`);
  }
  return address.port;
}
