// Rank 0 under a launcher: the coordinator (--listen on its host, --expect =
// the world size) in this process, and rank 0's worker as a child process
// (a worker's compute would stall the coordinator's heartbeats in-process).
import { type ChildProcess, spawn } from 'node:child_process';
import { readKeyPair } from '@lorafleet/collective';
import { GPU_BACKENDS, type BackendName } from '@lorafleet/core';
import type { Placement } from '@lorafleet/launch';
import type { TrainOptions } from '../training/train-spec.js';
import { workerBin } from '../distributed/worker-process.js';
import type { LaunchEndpoints } from './endpoints.js';
import { restartOf } from './run-id.js';

/** How long rank 0's worker may take to leave after the coordinator's Shutdown. */
const WORKER_EXIT_MS = 30_000;

export async function runRankZero(
  o: TrainOptions,
  placement: Placement,
  endpoints: LaunchEndpoints,
  train: (o: TrainOptions) => Promise<void>,
): Promise<void> {
  const restart = o.resume === undefined ? await restartOf(o.out, placement.runId) : undefined;
  if (restart && 'resume' in restart) {
    console.log(
      `run ${placement.runId} restarted (restart ${placement.restartCount}): resuming from ${restart.resume}`,
    );
  }
  const coordinating: TrainOptions = {
    ...o,
    launcher: 'none',
    listen: endpoints.listen,
    expect: placement.worldSize,
    ...restart,
  };
  const worker = spawnRankZeroWorker(o, placement, endpoints);
  try {
    await train(coordinating);
  } finally {
    await exited(worker, WORKER_EXIT_MS);
  }
}

function spawnRankZeroWorker(
  o: TrainOptions,
  placement: Placement,
  endpoints: LaunchEndpoints,
): ChildProcess {
  const backend: BackendName = o.backend;
  const args = [
    workerBin(),
    ...['--coordinator', endpoints.coordinator, '--ring-host', endpoints.ringHost],
    ...['--backend', backend, '--timeout', String(o.heartbeatTimeout)],
    ...['--join-timeout', String(o.joinTimeout)],
  ];
  if (GPU_BACKENDS.includes(backend)) args.push('--gpu', String(placement.localRank));
  const keyFile = o.curveKey;
  // The shared key pair: rank 0's worker is a client of its own coordinator's key.
  if (keyFile !== undefined) {
    args.push('--curve-key', keyFile, '--server-key', readKeyPair(keyFile).publicKey);
  }
  return spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
}

/** Waits for `child` to exit, killing it after `ms`. */
async function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await new Promise((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
}
