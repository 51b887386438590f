// Where rank 0 listens and where every worker's ring listens, from the
// coordinator host the launcher names.
import { networkInterfaces } from 'node:os';
import { localAddressToward, resolveHost, type Placement } from '@lorafleet/launch';
import { UsageError } from '../args.js';

export interface LaunchEndpoints {
  /** The coordinator's control endpoint, as the workers dial it. */
  coordinator: string;
  /** Rank 0: what the coordinator binds (the host's address when it is ours, else every interface). */
  listen: string;
  /** This host's address toward the coordinator: the ring socket listens there. */
  ringHost: string;
}

export async function launchEndpoints(placement: Placement): Promise<LaunchEndpoints> {
  const { host, port } = placement.coordinator;
  let address: string;
  let ringHost: string;
  try {
    address = await resolveHost(host);
    ringHost = await localAddressToward(address, port);
  } catch (error) {
    throw new UsageError(`train: ${(error as Error).message} (--coordinator-host)`);
  }
  const dial = address.includes(':') ? `[${address}]` : address;
  const ours = isLocalAddress(address);
  return {
    coordinator: `tcp://${dial}:${port}`,
    listen: `tcp://${ours ? dial : '0.0.0.0'}:${port}`,
    ringHost,
  };
}

function isLocalAddress(address: string): boolean {
  if (/^127\./.test(address) || address === '::1') return true;
  return Object.values(networkInterfaces()).some((list) =>
    (list ?? []).some((i) => i.address === address),
  );
}
