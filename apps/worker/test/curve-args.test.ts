// The CURVE flags: both or neither, from flags or the environment.
import { describe, expect, it } from 'vitest';
import { UsageError, parseDaemonArgs } from '../src/args.js';

const URL = 'tcp://127.0.0.1:5555';

describe('--curve-key and --server-key', () => {
  it('are both passed on, from flags or LORAFLEET_CURVE_KEY / LORAFLEET_SERVER_KEY', () => {
    const argv = ['--coordinator', URL, '--curve-key', 'w1.key', '--server-key', 'coord.pub'];
    expect(parseDaemonArgs(argv, {})).toMatchObject({
      curve: { keyFile: 'w1.key', serverKey: 'coord.pub' },
    });
    const env = { LORAFLEET_CURVE_KEY: 'w2.key', LORAFLEET_SERVER_KEY: 'coord.pub' };
    expect(parseDaemonArgs(['--coordinator', URL], env)).toMatchObject({
      curve: { keyFile: 'w2.key', serverKey: 'coord.pub' },
    });
    expect(parseDaemonArgs(['--coordinator', URL], {})).not.toHaveProperty('curve');
  });

  it.each([
    [['--curve-key', 'w1.key'], /--curve-key needs --server-key: CURVE takes/],
    [['--server-key', 'coord.pub'], /--server-key needs --curve-key/],
  ])('refuses one without the other: %j', (flags, message) => {
    const argv = ['--coordinator', URL, ...flags];
    expect(() => parseDaemonArgs(argv, {})).toThrow(UsageError);
    expect(() => parseDaemonArgs(argv, {})).toThrow(message);
  });
});
