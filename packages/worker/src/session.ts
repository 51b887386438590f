// A worker's whole life in a data-parallel run (DESIGN.md, "The step"):
// Hello -> Welcome -> build the replica -> ready -> for each StepPlan: train
// its share, all-reduce over the ring, StepDone; Commit or Abort; save the
// adapter or a checkpoint on CheckpointRequest; leave on Shutdown. A resumed
// run's replicas load the checkpoint named in the RunConfig before step one.
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { RingAllReduce } from '@lorafleet/collective';
import { type BackendName, useBackend } from '@lorafleet/core';
import type { StepPlan, Welcome } from '@lorafleet/protocol';
import { isCheckpointInProgress } from './checkpoint.js';
import { maybeCorruptReplica } from './fault-injection.js';
import { CoordinatorLink, UNASSIGNED_RUN } from './coordinator-link.js';
import { Replica } from './replica.js';
import { RunConfigError, decodeRunConfig } from './run-config.js';
import { batchesOf } from './rows.js';
import type { TrainState } from './step.js';

export interface WorkerOptions {
  /** The coordinator's ROUTER endpoint, tcp://HOST:PORT. */
  coordinator: string;
  backend: BackendName;
  /** Longest silence from the coordinator before this worker gives up. */
  timeoutMs: number;
  /** Address the ring socket listens on and advertises to the other ranks. */
  ringHost: string;
  log: (line: string) => void;
}

/** Runs one worker until the coordinator shuts it down; throws on any failure. */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const { log } = options;
  // The ring's socket can only be bound once Welcome gives our rank, but Hello
  // must already say where it will listen: reserve a free port now, bind it then.
  const dataEndpoint = `tcp://${options.ringHost}:${await freePort(options.ringHost)}`;
  const link = new CoordinatorLink(options.coordinator, options.timeoutMs, log);
  try {
    await link.send({
      case: 'hello',
      value: {
        workerId: `${hostname()}:${process.pid}`,
        host: hostname(),
        pid: process.pid,
        device: 'cpu',
        backend: options.backend,
        capabilities: [],
        dataEndpoint,
        curvePublicKey: '',
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
  const { rank, worldSize, ringEndpoints } = welcome.value;
  const { runId } = welcome;
  if (runId === UNASSIGNED_RUN) throw new Error(`Welcome without a run id`);
  link.joinRun(runId);
  if (ringEndpoints[rank] !== dataEndpoint) {
    throw new Error(
      `Welcome lists ${ringEndpoints[rank]} for rank ${rank}, but this worker listens on ${dataEndpoint}`,
    );
  }
  const config = decodeRunConfig(welcome.value.runConfig, welcome.value.runConfigHash);
  const ring = await RingAllReduce.bind({
    rank,
    worldSize,
    listen: dataEndpoint,
    timeoutMs: config.ringTimeoutMs,
  });
  let replica: Replica | undefined;
  try {
    ring.connect(ringEndpoints);
    let ringStep = 0;
    const allReduce = (buffer: Float32Array) => ring.allReduce(buffer, { step: ringStep, runId });
    await useBackend(options.backend);
    replica = await Replica.build(config, allReduce);
    if (config.resumeFrom) await replica.restore(config.resumeFrom);
    options.log(
      `rank ${rank}/${worldSize} (pid ${process.pid}) of run ${runId}: ${replica.rows.length} rows, ` +
        `${replica.step.params.size} trainable parameters on ${options.backend}` +
        (config.resumeFrom ? `, resumed at step ${replica.step.stepsDone}` : '') +
        '; ready',
    );
    // "Ready": the coordinator plans the first step once every rank has loaded.
    await link.send({
      case: 'heartbeat',
      value: {
        sentAtMs: Date.now(),
        state: 'idle',
        rssBytes: process.memoryUsage.rss(),
        stepsDone: replica.step.stepsDone,
      },
    });
    let snapshot: TrainState | undefined;
    for (;;) {
      const { body } = await link.receive(`the next step plan (${replica.step.stepsDone} done)`);
      switch (body.case) {
        case 'stepPlan':
          snapshot = replica.step.snapshot();
          ringStep = body.value.step;
          await link.send({
            case: 'stepDone',
            value: await trainStep(replica, body.value, rank, options.log),
          });
          break;
        case 'commit':
          if (body.value.step !== replica.step.stepsDone) {
            throw new Error(
              `Commit of step ${body.value.step}, but this replica is at ${replica.step.stepsDone}`,
            );
          }
          snapshot = undefined;
          break;
        case 'abort':
          if (snapshot) replica.step.restore(snapshot);
          snapshot = undefined;
          options.log(`rank ${rank}: step ${body.value.step} aborted: ${body.value.reason}`);
          break;
        case 'checkpointRequest': {
          const { step, path } = body.value;
          if (step !== replica.step.stepsDone) {
            throw new Error(
              `CheckpointRequest for step ${step}, but this replica is at ${replica.step.stepsDone}`,
            );
          }
          // A folder the coordinator started with trainer_state.json is a
          // training checkpoint; any other path gets the final PEFT adapter.
          const manifestSha256 = (await isCheckpointInProgress(path))
            ? await replica.writeCheckpoint(path)
            : await replica.saveAdapter(path);
          await link.send({ case: 'checkpointDone', value: { step, path, manifestSha256 } });
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
    ring.close();
    replica?.dispose();
  }
}

/** One step on this rank's share of the global batch; the StepDone it reports. */
async function trainStep(
  replica: Replica,
  plan: StepPlan,
  rank: number,
  log: (line: string) => void,
) {
  const expected = replica.step.stepsDone + 1;
  if (plan.step !== expected) {
    throw new Error(`StepPlan for step ${plan.step}, but this replica's next step is ${expected}`);
  }
  const seqLen = replica.config.rows.seqLen;
  const batches = batchesOf(replica.rowsOf(plan.sampleIds), plan.microBatchSize, seqLen);
  const result = await replica.step.run(batches);
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
