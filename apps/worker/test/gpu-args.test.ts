// `--gpu INDEX` (env LORAFLEET_GPU): GPU backends only, a plain index.
import { describe, expect, it } from 'vitest';
import { UsageError, parseDaemonArgs } from '../src/args.js';

const URL = 'tcp://127.0.0.1:5555';

describe('--gpu', () => {
  it('--list-gpus needs nothing else (no coordinator)', () => {
    expect(parseDaemonArgs(['--list-gpus'], {})).toBe('list-gpus');
  });

  it('takes a GPU index with a GPU backend, from the flag or the environment', () => {
    expect(
      parseDaemonArgs(['--coordinator', URL, '--backend', 'webgpu', '--gpu', '3'], {}),
    ).toMatchObject({ backend: 'webgpu', gpu: 3 });
    expect(
      parseDaemonArgs(['--coordinator', URL], {
        LORAFLEET_BACKEND: 'tensorflow-gpu',
        LORAFLEET_GPU: '0',
      }),
    ).toMatchObject({ backend: 'tensorflow-gpu', gpu: 0 });
    expect(parseDaemonArgs(['--coordinator', URL, '--backend', 'webgpu'], {})).not.toHaveProperty(
      'gpu',
    );
  });

  it.each([
    [['--backend', 'webgpu', '--gpu=-1'], /--gpu -1: expected a GPU index/],
    [['--backend', 'webgpu', '--gpu', '1.5'], /--gpu 1\.5: expected a GPU index/],
    [['--backend', 'webgpu', '--gpu', 'all'], /--gpu all: expected a GPU index/],
    [['--gpu', '0'], /--gpu needs a GPU backend \(--backend webgpu or tensorflow-gpu\), not wasm/],
    [['--backend', 'tensorflow', '--gpu', '0'], /not tensorflow$/],
  ])('rejects %j', (args, message) => {
    expect(() => parseDaemonArgs(['--coordinator', URL, ...args], {})).toThrow(UsageError);
    expect(() => parseDaemonArgs(['--coordinator', URL, ...args], {})).toThrow(message);
  });

  it('lists the GPU backends in the help', async () => {
    const { HELP } = await import('../src/args.js');
    expect(HELP).toMatch(
      /--backend NAME +compute backend \(one of: wasm, cpu, webgpu, tensorflow, tensorflow-gpu/,
    );
    expect(HELP).toMatch(/--gpu INDEX/);
  });
});
