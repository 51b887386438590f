// Ranks 1..N-1 under a launcher: this process is the worker (one task, one
// process, so the engine's kill of the task is the worker's loss). It exits
// non-zero when the coordinator stays silent past --heartbeat-timeout, so the
// engine's restart policy applies.
import { readKeyPair } from '@lorafleet/collective';
import { type BackendName, GPU_BACKENDS, deviceName, useBackend } from '@lorafleet/core';
import type { Placement } from '@lorafleet/launch';
import { reportBackendFailure, runWorker, waitForCoordinatorOnSigterm } from '@lorafleet/worker';
import type { TrainOptions } from '../training/train-spec.js';
import type { LaunchEndpoints } from './endpoints.js';

export async function runRankWorker(
  o: TrainOptions,
  placement: Placement,
  endpoints: LaunchEndpoints,
): Promise<void> {
  const backend: BackendName = o.backend;
  const gpu = GPU_BACKENDS.includes(backend) ? placement.localRank : undefined;
  const log = (line: string) => console.error(`lorafleet train [rank ${placement.rank}]: ${line}`);
  const keyFile = o.curveKey;
  // One key pair for every task (a Secret, a file on the shared disk): the
  // coordinator's public key is its public half.
  const keyPair = keyFile === undefined ? undefined : readKeyPair(keyFile);
  const curve = keyPair && { keyPair, serverPublicKey: keyPair.publicKey };
  try {
    await useBackend(backend, gpu === undefined ? {} : { gpu });
  } catch (error) {
    // The engine would start this task the same way: tell the coordinator, which stops the run.
    const reason = (error as Error).message;
    log(`cannot compute on ${backend}: ${reason}`);
    const timeoutMs = o.joinTimeout * 1000;
    const { rank } = placement;
    const report = { coordinator: endpoints.coordinator, rank, backend, reason, timeoutMs, log };
    await reportBackendFailure({ ...report, ...(curve && { curve }) });
    throw error;
  }
  log(`computing on ${backend} (${deviceName()}); joining ${endpoints.coordinator}`);
  // The engine signals every task at once; the coordinator saves and then stops the workers.
  const sigterm = waitForCoordinatorOnSigterm(log);
  await runWorker({
    onWelcome: sigterm.onWelcome,
    coordinator: endpoints.coordinator,
    backend,
    timeoutMs: o.heartbeatTimeout * 1000,
    joinTimeoutMs: o.joinTimeout * 1000,
    ringHost: endpoints.ringHost,
    log,
    ...(curve && { curve }),
  }).finally(sigterm.dispose);
}
