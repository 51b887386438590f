// The one rule for "does this address only reach this machine", as a table:
// train --listen without CURVE and the dashboard without a token both ask it.
import { describe, expect, it } from 'vitest';
import { isLoopback } from '../src/index.js';

const table: [host: string, loopback: boolean, why: string][] = [
  ['127.0.0.1', true, 'IPv4 loopback'],
  ['127.1.2.3', true, 'all of 127.0.0.0/8'],
  ['127.255.255.255', true, 'the top of 127.0.0.0/8'],
  ['127.1', true, 'short IPv4 form, as inet_aton reads it'],
  ['0x7f.0.0.1', true, 'hex IPv4 form, as inet_aton reads it'],
  ['localhost', true, 'the loopback name'],
  ['LOCALHOST', true, 'names are case-insensitive'],
  ['::1', true, 'IPv6 loopback'],
  ['[::1]', true, 'IPv6 loopback in brackets'],
  ['0:0:0:0:0:0:0:1', true, 'IPv6 loopback, long form'],
  ['::ffff:127.0.0.1', true, 'IPv4-mapped loopback'],
  ['[::ffff:127.9.8.7]', true, 'IPv4-mapped loopback in brackets'],
  ['0.0.0.0', false, 'every interface'],
  ['::', false, 'every IPv6 interface'],
  ['[::]', false, 'every IPv6 interface, in brackets'],
  ['*', false, 'ZeroMQ wildcard: every interface'],
  ['10.0.0.5', false, 'a private address is still another machine'],
  ['128.0.0.1', false, 'just outside 127.0.0.0/8'],
  ['126.255.255.255', false, 'just below 127.0.0.0/8'],
  ['127.999.0.1', false, 'not an address'],
  ['::2', false, 'not ::1'],
  ['::ffff:10.0.0.1', false, 'IPv4-mapped, not loopback'],
  ['example.com', false, 'a name resolved by DNS'],
  ['localhost.example.com', false, 'a name that merely starts with localhost'],
  ['evil.localhost', false, 'subdomains of localhost go to the resolver, which may ask DNS'],
  ['', false, 'empty'],
  ['[::1', false, 'unbalanced bracket'],
];

describe('isLoopback', () => {
  it.each(table)('%s -> %s (%s)', (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });
});
