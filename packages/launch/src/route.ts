// Which of this host's addresses the others reach it on: the source address
// the kernel picks for a route to the coordinator. A UDP "connect" only looks
// the route up; no packet leaves.
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** `host` as an IPv4/IPv6 address (a name is looked up); throws naming the host. */
export async function resolveHost(host: string): Promise<string> {
  if (isIP(host)) return host;
  try {
    return (await lookup(host)).address;
  } catch (error) {
    throw new Error(`cannot resolve the coordinator host ${host}: ${(error as Error).message}`);
  }
}

/** This host's address on the route to `host` (the ring address the other ranks dial). */
export async function localAddressToward(host: string, port: number): Promise<string> {
  const address = await resolveHost(host);
  const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, address, () => resolve());
    });
    return socket.address().address;
  } finally {
    socket.close();
  }
}
