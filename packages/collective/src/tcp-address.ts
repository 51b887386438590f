// The ring's endpoints ("tcp://host:port", "ipc://path", as ZeroMQ writes them)
// turned into node:net addresses, so both data planes take the same strings.
import type { AddressInfo, Server } from 'node:net';

export type NetAddress = { host: string; port: number } | { path: string };

/** Where to listen or connect; `*` (any interface) and port `*` (a free one) as in ZeroMQ. */
export function parseEndpoint(endpoint: string): NetAddress {
  if (endpoint.startsWith('ipc://')) {
    const path = endpoint.slice('ipc://'.length);
    if (path) return { path };
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+|\*)$/.exec(endpoint);
  if (m) {
    const host = m[1] === '*' ? '0.0.0.0' : m[1]!.replace(/^\[(.*)\]$/, '$1');
    const port = m[2] === '*' ? 0 : Number(m[2]);
    if (port <= 65535) return { host, port };
  }
  throw new RangeError(
    `ring endpoint "${endpoint}" is not tcp://HOST:PORT (PORT may be * for a free one) or ipc://PATH`,
  );
}

/** The endpoint a bound server is reachable at, written the way the other ranks parse it. */
export function boundEndpoint(server: Server, listen: string): string {
  const address = server.address() as AddressInfo | string | null;
  if (!address || typeof address === 'string') return listen;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `tcp://${host}:${address.port}`;
}
