// Where the dashboard listens, and whether that place is this machine only:
// a loopback address (isLoopback, @lorafleet/protocol) may serve without a
// token, anything else may not.
import { isIP } from 'node:net';

export interface ListenAddress {
  /** As given, without IPv6 brackets. */
  host: string;
  /** 0: any free port. */
  port: number;
}

/** Parses HOST:PORT (IPv6 as [::1]:PORT); throws a message naming the bad part. */
export function parseListen(listen: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || host === undefined || port > 65535) {
    throw new Error(
      `dashboard: cannot read the listen address "${listen}": expected HOST:PORT, e.g. 127.0.0.1:7777 or [::1]:0`,
    );
  }
  if (m[1] !== undefined && isIP(host) !== 6)
    throw new Error(`dashboard: "${listen}": only an IPv6 address goes in brackets`);
  return { host, port };
}

/** The host of an HTTP Host header ("127.0.0.1:7777", "[::1]:80", "localhost"), without port or brackets. */
export function hostOfHeader(header: string): string {
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(header);
  if (m) return m[1]!;
  const colon = header.lastIndexOf(':');
  return colon >= 0 ? header.slice(0, colon) : header;
}

/** How a browser writes `host` in a URL. */
export function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}
