// Which --listen hosts count as loopback (no --allow-remote needed).
import { describe, expect, it } from 'vitest';
import { isLoopback } from '../src/distributed/membership.js';

describe('isLoopback', () => {
  it.each(['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '[::1]', '::1'])('%s: yes', (h) =>
    expect(isLoopback(h)).toBe(true),
  );
  it.each(['0.0.0.0', '*', '10.0.0.5', '[::]', 'example.com', '128.0.0.1'])('%s: no', (h) =>
    expect(isLoopback(h)).toBe(false),
  );
});
