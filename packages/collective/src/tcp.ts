// The ring's data plane on plain TCP (or unix sockets) through node:net, used when
// CURVE is off. Measured on the 2-core machine (docs/wire.md): exchanging 1 MiB
// took ~5 ms of CPU per call over ZeroMQ (its I/O thread, a fresh allocation and
// its page faults per received message, three thread wake-ups per hop) and
// ~0.6 ms over a node:net socket reading into reused buffers.
//
// A link is one TCP connection, made by the RECEIVING rank to its left
// neighbour's server: only a connecting socket can read into our own buffers
// (node's `onread`), so each received piece lands, with no copy beyond the
// kernel's, in a buffer from a pool of piece-sized buffers. The connecting rank
// opens with a hello (magic, rank, world size), and the server keeps the first
// connection from its right neighbour and closes any other.
//
// On the wire a chunk is [u32 header length][u32 payload length][header][payload]
// (little-endian), the header being the very protobuf header frame ZeroMQ carries,
// with its CRC-32, checked the same way (links.ts: checkArrival).
//
// This file: the framing constants, the server and the link options;
// tcp-outbox.ts sends, tcp-inbox.ts receives.
import { createServer, type Server } from 'node:net';
import type { WireLimits } from '@lorafleet/protocol';
import { boundEndpoint, parseEndpoint } from './tcp-address.js';

export const MAGIC = Buffer.from('LFRING\0\x01', 'latin1');
export const HELLO_BYTES = MAGIC.length + 8;
export const PREFIX_BYTES = 8;
/** How often a receiving rank retries a refused connection (its neighbour may bind late). */
export const RETRY_MS = 50;

/** Binds the server a rank's right neighbour connects to; resolves with it and its endpoint. */
export async function listenTcp(listen: string): Promise<{ server: Server; endpoint: string }> {
  const address = parseEndpoint(listen);
  const server = createServer({ noDelay: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, endpoint: 'path' in address ? listen : boundEndpoint(server, listen) };
}

export interface TcpLinkOptions {
  rank: number;
  worldSize: number;
  timeoutMs: number;
  /** Largest piece payload a sender sends: the size of the pooled receive buffers. */
  frameBytes: number;
  /** Pieces received and not yet taken before the link stops reading (TCP then holds the sender). */
  highWaterMark: number;
  limits: WireLimits;
  checksum: boolean;
  log: (line: string) => void;
}
