// Whether an address only reaches this machine: the one rule for "may this
// listen without CURVE / without a token" (train --listen, the dashboard's
// bind address and its Host header check against DNS rebinding).
//
// Addresses are read the way the OS and browsers read them (the WHATWG URL
// host parser): 127.1, 0x7f.0.0.1 and 0:0:0:0:0:0:0:1 are loopback too.
// Only the name "localhost" counts, not "x.localhost": resolving those is up
// to the system's resolver, which may ask DNS.

/** `host`: a name or an address, IPv6 with or without brackets; case does not matter. */
export function isLoopback(host: string): boolean {
  const bare = host.trim().replace(/^\[(.*)\]$/, '$1');
  if (bare === '') return false;
  let canonical: string;
  try {
    canonical = new URL(`http://${bare.includes(':') ? `[${bare}]` : bare}/`).hostname;
  } catch {
    return false; // not a host at all (e.g. "127.999.0.1", "[::1")
  }
  if (canonical === 'localhost' || canonical === '[::1]') return true;
  // IPv4 127.0.0.0/8, also mapped into IPv6 (::ffff:127.x.y.z canonicalizes to ::ffff:7fXX:XXXX).
  return (
    /^127\.\d+\.\d+\.\d+$/.test(canonical) ||
    /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical)
  );
}
