// A worker's whole life in a data-parallel run (DESIGN.md, "The step" and
// "Faults"): Hello -> Welcome -> build the replica -> ready (first heartbeat;
// then one a second) -> for each StepPlan: train its share, all-reduce over
// the ring, StepDone; Commit, or Abort (restore the step-start snapshot);
// Regroup re-forms the ring after a loss or a join; StateRequest/TrainerState
// hand the adapter + optimizer state to a joining worker; save the adapter or
// a checkpoint on CheckpointRequest; leave on Shutdown. A resumed run's
// replicas load the checkpoint named in the RunConfig before step one.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { type BackendName, deviceName, useBackend } from '@lorafleet/core';
import type { Welcome } from '@lorafleet/protocol';
import { FEEDBACK_NAMES } from '@lorafleet/models';
import { handle } from './control-handlers.js';
import { errorCodeOf } from './data-error.js';
import { CoordinatorLink, type LinkCurve, UNASSIGNED_RUN } from './coordinator-link.js';
import { Mailbox } from './mailbox.js';
import { Replica } from './replica.js';
import { RunConfigError, type WireDtypeName, decodeRunConfig } from './run-config.js';
import { WorkerSession } from './worker-session.js';

export interface WorkerOptions {
  /** The coordinator's ROUTER endpoint, tcp://HOST:PORT. */
  coordinator: string;
  backend: BackendName;
  /** Longest silence from the coordinator before this worker gives up. */
  timeoutMs: number;
  /**
   * How long to wait for Welcome after Hello (default: timeoutMs): under a
   * cluster engine the coordinator's task may start well after ours.
   */
  joinTimeoutMs?: number;
  /** Address the ring socket listens on and advertises to the other ranks. */
  ringHost: string;
  log: (line: string) => void;
  /** CURVE on both planes; the coordinator must run with --curve-key too. */
  curve?: LinkCurve;
  /** Join only runs whose gradients travel in this type (`--wire-dtype`); absent: any. */
  wireDtype?: WireDtypeName;
  /** Called when the coordinator's Welcome arrives: from then on this worker is in a run. */
  onWelcome?: () => void;
}

/** Runs one worker until the coordinator shuts it down; throws on any failure. */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const { log } = options;
  // The ring's socket can only be bound once Welcome gives our rank, but Hello
  // must already say where it will listen: reserve a free port now, bind it then.
  const dataEndpoint = `tcp://${options.ringHost}:${await freePort(options.ringHost)}`;
  const link = new CoordinatorLink(options.coordinator, options.timeoutMs, log, options.curve);
  // What our heartbeats carry, to be told apart from any other worker's.
  const heartbeatId = randomBytes(16).toString('hex');
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
        heartbeatId,
      },
    });
    const welcome = await awaitWelcome(link, log, options.joinTimeoutMs);
    if (!welcome) return;
    options.onWelcome?.();
    try {
      await serve(link, welcome, { dataEndpoint, heartbeatId }, options);
    } catch (error) {
      await link.sendError(
        errorCodeOf(error),
        `rank ${welcome.value.rank}: ${(error as Error).message}`,
      );
      throw error;
    }
  } finally {
    link.close();
  }
}

type WelcomeMessage = { runId: string; value: Welcome };

/** While a worker waits to join unconnected, how often it says where the connection stands. */
const JOIN_PROGRESS_EVERY_MS = 10_000;

async function awaitWelcome(
  link: CoordinatorLink,
  log: (line: string) => void,
  timeoutMs?: number,
): Promise<WelcomeMessage | undefined> {
  const started = performance.now();
  // Connected, the wait is the coordinator's (it says how many workers it has); unconnected, ours.
  const progress = setInterval(() => {
    if (link.connected) return;
    const waited = ((performance.now() - started) / 1000).toFixed(0);
    log(
      `still waiting to join the run at ${link.endpoint} (${waited} s): ${link.connectionState()}`,
    );
  }, JOIN_PROGRESS_EVERY_MS);
  try {
    return await nextWelcome(link, timeoutMs);
  } finally {
    clearInterval(progress);
  }
}

async function nextWelcome(
  link: CoordinatorLink,
  timeoutMs?: number,
): Promise<WelcomeMessage | undefined> {
  for (;;) {
    const msg = await link.receive(`Welcome (after Hello to ${link.endpoint})`, timeoutMs);
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
  { dataEndpoint, heartbeatId }: { dataEndpoint: string; heartbeatId: string },
  options: WorkerOptions,
): Promise<void> {
  const { runId, value: w } = welcome;
  if (runId === UNASSIGNED_RUN) throw new Error(`Welcome without a run id`);
  link.joinRun(runId);
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
  const session = new WorkerSession({
    link,
    mailbox: new Mailbox(link),
    runId,
    dataEndpoint,
    heartbeatId,
    config,
    curve: options.curve,
    log: options.log,
    rank: w.rank,
    generation: w.generation,
  });
  try {
    // A joiner gets its place in the ring from a Regroup, after the trainer state.
    // "Loading" heartbeats from Welcome on: the coordinator drops a peer that
    // said Hello but shows no sign of loading (see its roster).
    session.state = 'loading';
    session.startHeartbeat();
    if (!w.joining) await session.formRing(w);
    await useBackend(options.backend);
    session.replica = await Replica.build(config, session.allReduce);
    if (config.resumeFrom) await session.replica.restore(config.resumeFrom);
    options.log(readyLine(session, w, runId, options.backend));
    session.state = 'idle';
    session.startHeartbeat();
    for (;;) {
      const done = session.replica.step.stepsDone;
      const { body } = await session.mailbox.next(`the next step plan (${done} done)`);
      if ((await handle(session, body)) === 'stop') return;
    }
  } finally {
    await session.close();
  }
}

function readyLine(session: WorkerSession, w: Welcome, runId: string, backend: string): string {
  const r = session.replica;
  const { objective } = session.config;
  return (
    (w.joining
      ? `joiner (pid ${process.pid}) of run ${runId}`
      : `rank ${session.rank}/${w.worldSize} (pid ${process.pid}) of run ${runId}`) +
    `: ${r.rows.length} ${session.config.rows.pairs ? 'preference pairs' : session.config.rows.kto ? 'KTO examples' : 'rows'}, ` +
    `${r.step.params.size} trainable parameters on ${backend}` +
    (session.config.resumeFrom ? `, resumed at step ${r.step.stepsDone}` : '') +
    (r.step.recomputesLayers ? ', gradient checkpointing' : '') +
    (objective ? `, ${FEEDBACK_NAMES[objective.kind]} beta ${objective.beta}` : '') +
    (backend === 'webgpu' ? `; gradients: ${gradientsLine(r.step.gradients)}` : '') +
    '; ready'
  );
}

function gradientsLine(g: { path: string; reason: string | null }): string {
  return g.path === 'scheduled' ? 'the hand-scheduled step' : `the tape (${g.reason})`;
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
