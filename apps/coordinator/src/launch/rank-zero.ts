// Rank 0 under a launcher: the coordinator (--listen on its host, --expect =
// the world size) in this process, and rank 0's worker as a child process
// (a worker's compute would stall the coordinator's heartbeats in-process).
import { type ChildProcess, spawn } from 'node:child_process';
import { readKeyPair } from '@lorafleet/collective';
import { GPU_BACKENDS, type BackendName } from '@lorafleet/core';
import type { Placement } from '@lorafleet/launch';
import { WORKER_EXIT, WORKER_LOG_PREFIX } from '@lorafleet/worker';
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
  const training = train(coordinating);
  try {
    // The run cannot start without rank 0's worker: fail now, not after --join-timeout.
    await Promise.race([training, backendFailure(worker, o.backend)]);
  } catch (error) {
    training.catch(() => undefined); // abandoned: this process exits with `error`
    // No Welcome, or no more coordinator: its SIGTERM handling leaves at once
    // before a Welcome, else as soon as it finds the coordinator silent.
    worker.kill('SIGTERM');
    throw error;
  } finally {
    await exited(worker, WORKER_EXIT_MS);
  }
}

/**
 * Rejects, with the worker's reason, if rank 0's worker exits because its
 * backend cannot start (WORKER_EXIT.backend); never settles otherwise.
 */
function backendFailure(worker: ChildProcess, backend: BackendName): Promise<never> {
  let last = '';
  let partial = '';
  const keep = (line: string) => (last = line.startsWith(WORKER_LOG_PREFIX) ? line : last);
  worker.stderr!.setEncoding('utf8').on('data', (text: string) => {
    process.stderr.write(text);
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    lines.forEach(keep);
  });
  return new Promise((_, reject) => {
    worker.on('close', (code) => {
      keep(partial);
      if (code !== WORKER_EXIT.backend) return;
      const reason = last.slice(WORKER_LOG_PREFIX.length) || 'see its output above';
      reject(new Error(`rank 0's worker cannot compute on ${backend}: ${reason}`));
    });
  });
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
    // The engine signals this task's processes together; the coordinator (this
    // process) saves a checkpoint and then shuts its worker down.
    ...['--on-sigterm', 'wait'],
  ];
  if (GPU_BACKENDS.includes(backend)) args.push('--gpu', String(placement.localRank));
  const keyFile = o.curveKey;
  // The shared key pair: rank 0's worker is a client of its own coordinator's key.
  if (keyFile !== undefined) {
    args.push('--curve-key', keyFile, '--server-key', readKeyPair(keyFile).publicKey);
  }
  // stderr is piped: backendFailure() forwards it and keeps the reason of an early exit.
  return spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'] });
}

/** Waits for `child` to exit, killing it after `ms`. */
async function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await new Promise((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
}
