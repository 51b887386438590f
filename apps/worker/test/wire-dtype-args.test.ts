// `--wire-dtype TYPE` (env LORAFLEET_WIRE_DTYPE): the only runs this worker joins.
import { describe, expect, it } from 'vitest';
import { HELP, UsageError, parseDaemonArgs } from '../src/args.js';

const URL = 'tcp://127.0.0.1:5555';

describe('--wire-dtype', () => {
  it('takes fp32, bf16 or fp16 from the flag or the environment; absent, follows the run', () => {
    expect(parseDaemonArgs(['--coordinator', URL, '--wire-dtype', 'bf16'], {})).toMatchObject({
      wireDtype: 'bf16',
    });
    expect(parseDaemonArgs(['--coordinator', URL], { LORAFLEET_WIRE_DTYPE: 'fp16' })).toMatchObject(
      { wireDtype: 'fp16' },
    );
    expect(parseDaemonArgs(['--coordinator', URL], {})).not.toHaveProperty('wireDtype');
    expect(HELP).toContain('--wire-dtype TYPE');
  });

  it('rejects another type, naming the choices', () => {
    const parse = () => parseDaemonArgs(['--coordinator', URL, '--wire-dtype', 'fp8'], {});
    expect(parse).toThrow(UsageError);
    expect(parse).toThrow('--wire-dtype must be one of fp32, bf16, fp16, got "fp8"');
  });
});
