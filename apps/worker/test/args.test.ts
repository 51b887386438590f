// The daemon's options: flags, then LORAFLEET_* variables, then defaults.
import { describe, expect, it } from 'vitest';
import { UsageError, parseDaemonArgs } from '../src/args.js';

const URL = 'tcp://127.0.0.1:5555';

describe('parseDaemonArgs', () => {
  it('takes flags, with defaults for the rest', () => {
    expect(parseDaemonArgs(['--coordinator', URL], {})).toEqual({
      coordinator: URL,
      backend: 'wasm',
      timeoutMs: 60_000,
      ringHost: '127.0.0.1',
      rejoin: false,
      onSigterm: 'exit',
    });
    expect(parseDaemonArgs(['--coordinator', URL, '--rejoin'], {})).toMatchObject({ rejoin: true });
    expect(parseDaemonArgs(['--coordinator', URL], { LORAFLEET_REJOIN: '1' })).toMatchObject({
      rejoin: true,
    });
    expect(parseDaemonArgs(['--help'], {})).toBe('help');
  });

  it('falls back to the environment, and flags win over it', () => {
    const env = { LORAFLEET_COORDINATOR: URL, LORAFLEET_BACKEND: 'cpu', LORAFLEET_TIMEOUT: '5' };
    expect(parseDaemonArgs([], env)).toMatchObject({
      coordinator: URL,
      backend: 'cpu',
      timeoutMs: 5000,
    });
    expect(parseDaemonArgs(['--backend', 'wasm'], env)).toMatchObject({ backend: 'wasm' });
  });

  it.each([
    [[], /--coordinator \(or LORAFLEET_COORDINATOR\) is required/],
    [['--coordinator', 'localhost:5555'], /expected tcp:\/\/HOST:PORT/],
    [['--coordinator', URL, '--backend', 'gpu'], /--backend must be one of wasm, cpu, .*got "gpu"/],
    [['--coordinator', URL, '--timeout', '0'], /--timeout must be >= 0.001, got "0"/],
    [['--coordinator', URL, '--bogus'], /Unknown option '--bogus'.*see lorafleet-worker --help/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseDaemonArgs(argv, {})).toThrow(UsageError);
    expect(() => parseDaemonArgs(argv, {})).toThrow(message);
  });
});
