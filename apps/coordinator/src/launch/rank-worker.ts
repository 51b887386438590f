// Ranks 1..N-1 under a launcher: this process is the worker (one task, one
// process, so the engine's kill of the task is the worker's loss). It exits
// non-zero when the coordinator stays silent past --heartbeat-timeout, so the
// engine's restart policy applies.
import { readKeyPair } from '@lorafleet/collective';
import { type BackendName, GPU_BACKENDS, deviceName, useBackend } from '@lorafleet/core';
import type { Placement } from '@lorafleet/launch';
import { runWorker, waitForCoordinatorOnSigterm } from '@lorafleet/worker';
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
  await useBackend(backend, gpu === undefined ? {} : { gpu });
  log(`computing on ${backend} (${deviceName()}); joining ${endpoints.coordinator}`);
  const keyFile = o.curveKey;
  // One key pair for every task (a Secret, a file on the shared disk): the
  // coordinator's public key is its public half.
  const keyPair = keyFile === undefined ? undefined : readKeyPair(keyFile);
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
    ...(keyPair && { curve: { keyPair, serverPublicKey: keyPair.publicKey } }),
  }).finally(sigterm.dispose);
}
