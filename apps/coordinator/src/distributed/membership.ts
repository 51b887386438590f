// Where a distributed run's workers come from: `--workers N` spawns N local
// daemons; `--listen tcp://HOST:PORT --expect N` waits for N external ones.
// With --curve-key and --authorized-keys, both planes use ZeroMQ CURVE
// (encrypted, and only listed worker keys get in); without it, a non-loopback
// --listen needs --allow-remote and is warned about.
import { type CurveKeyPair, readKeyPair, readPublicKeys } from '@lorafleet/collective';
import { type BackendName, GPU_BACKENDS } from '@lorafleet/core';
import { isLoopback } from '@lorafleet/protocol';
import { UsageError } from '../args.js';
import type { TrainOptions } from '../training/train-spec.js';
import type { Membership } from './fleet.js';

/** The run's membership, or undefined for a single-process run; throws UsageError on bad flags. */
export function membershipFrom(
  o: TrainOptions,
  warn: (line: string) => void,
): Membership | undefined {
  const workers = o.workers;
  const listen = o.listen;
  const expected = o.expect;
  if (listen === undefined) {
    if (expected !== undefined)
      throw new UsageError('train: --expect N needs --listen tcp://HOST:PORT');
    if (o.allowRemote) throw new UsageError('train: --allow-remote needs --listen');
    return workers > 1 ? { kind: 'spawn', workers } : undefined;
  }
  if (expected === undefined) {
    throw new UsageError(
      `train: --listen ${listen} needs --expect N, the number of workers to wait for`,
    );
  }
  // --workers defaults to 1; any other value must agree (--listen spawns none).
  if (workers !== 1 && workers !== expected) {
    throw new UsageError(
      `train: --workers ${workers} and --expect ${expected} disagree; with --listen, give --expect only ` +
        '(external workers join; none are spawned)',
    );
  }
  const host = /^tcp:\/\/(\[[^\]]+\]|[^:/[\]]+):(\d+|\*)$/.exec(listen)?.[1];
  if (host === undefined) {
    throw new UsageError(
      `train: --listen ${listen}: expected tcp://HOST:PORT (e.g. tcp://0.0.0.0:5555)`,
    );
  }
  if (!isLoopback(host) && o.curveKey === undefined) {
    if (!o.allowRemote) {
      throw new UsageError(
        `train: --listen ${listen} is reachable from other machines, and without CURVE the traffic is not ` +
          'encrypted or authenticated: add --curve-key and --authorized-keys (see `lorafleet keys`), ' +
          'or --allow-remote on a trusted network, or listen on 127.0.0.1',
      );
    }
    warn(
      `--listen ${listen}: traffic is unencrypted and unauthenticated (no --curve-key); ` +
        'anyone who can reach this port can join or disturb the run',
    );
  }
  return { kind: 'listen', endpoint: listen, workers: expected };
}

/** CURVE settings of the run (--curve-key + --authorized-keys), or undefined; throws UsageError on bad flags. */
export function curveFrom(
  o: TrainOptions,
): { keyPair: CurveKeyPair; authorizedKeys: string[] } | undefined {
  const keyFile = o.curveKey;
  const authorized = o.authorizedKeys;
  if (keyFile === undefined && authorized === undefined) return undefined;
  if (keyFile === undefined || authorized === undefined) {
    throw new UsageError(
      'train: --curve-key and --authorized-keys go together (make keys with `lorafleet keys`)',
    );
  }
  if (o.listen === undefined) {
    throw new UsageError(
      'train: --curve-key is for --listen runs with external workers (spawned workers talk over loopback)',
    );
  }
  try {
    const keyPair = readKeyPair(keyFile);
    const authorizedKeys = readPublicKeys(authorized);
    if (authorizedKeys.length === 0) throw new Error(`${authorized}: no public keys`);
    return { keyPair, authorizedKeys };
  } catch (error) {
    throw new UsageError(`train: ${(error as Error).message}`);
  }
}

/** --gpus I,J,...: the GPU of each spawned worker, by slot; [] when not given. */
export function gpusFrom(o: TrainOptions, membership: Membership, backend: BackendName): number[] {
  const items = o.gpus ?? [];
  if (items.length === 0) return [];
  if (membership.kind !== 'spawn') {
    throw new UsageError(
      'train: --gpus is for spawned workers (--workers N); start external ones with `lorafleet-worker --gpu I`',
    );
  }
  if (!GPU_BACKENDS.includes(backend)) {
    throw new UsageError(
      `train: --gpus needs a GPU backend (--backend ${GPU_BACKENDS.join(' or ')}), not ${backend}`,
    );
  }
  return items.map((item) => {
    if (!/^\d+$/.test(item)) {
      throw new UsageError(
        `train: --gpus ${items.join(',')}: "${item}" is not a GPU index (0, 1, ...)`,
      );
    }
    return Number(item);
  });
}
