// `lorafleet-worker --launcher`: the coordinator's address and the GPU from a
// cluster launcher's variables; flags still win.
import { describe, expect, it } from 'vitest';
import { UsageError, parseDaemonArgs } from '../src/args.js';

const SLURM = {
  SLURM_PROCID: '1',
  SLURM_NTASKS: '3',
  SLURM_LOCALID: '1',
  SLURM_JOB_ID: '12',
  SLURM_STEP_NODELIST: 'gpu[07-09]',
};

describe('parseDaemonArgs --launcher', () => {
  it('reads the coordinator from Slurm, the GPU from the local rank, short timeouts', () => {
    const options = parseDaemonArgs(['--launcher', 'slurm', '--backend', 'webgpu'], SLURM);
    expect(options).toMatchObject({
      coordinator: 'tcp://gpu07:29512',
      gpu: 1,
      timeoutMs: 5000,
      joinTimeoutMs: 120_000,
      placement: { rank: 1, worldSize: 3, source: 'slurm' },
    });
    // The ring address is found at start (the route toward gpu07), not 127.0.0.1.
    expect(options).not.toHaveProperty('ringHost');
  });

  it('waits for the coordinator on SIGTERM under a launcher, exits otherwise; the flag wins', () => {
    const coordinator = ['--coordinator', 'tcp://10.0.0.9:7000'];
    expect(parseDaemonArgs(['--launcher', 'slurm'], SLURM)).toMatchObject({ onSigterm: 'wait' });
    expect(parseDaemonArgs(coordinator, {})).toMatchObject({ onSigterm: 'exit' });
    // Rank 0's worker, started by its coordinator's task with an explicit coordinator.
    expect(parseDaemonArgs([...coordinator, '--on-sigterm', 'wait'], {})).toMatchObject({
      onSigterm: 'wait',
    });
    expect(parseDaemonArgs(['--launcher', 'slurm', '--on-sigterm', 'exit'], SLURM)).toMatchObject({
      onSigterm: 'exit',
    });
    expect(() => parseDaemonArgs([...coordinator, '--on-sigterm', 'stay'], {})).toThrow(UsageError);
  });

  it('lets flags beat the environment', () => {
    const env = { ...SLURM, LORAFLEET_LAUNCHER: 'auto' };
    const argv = ['--coordinator', 'tcp://10.0.0.9:7000', '--ring-host', '10.0.0.5'];
    expect(parseDaemonArgs([...argv, '--timeout', '9'], env)).toMatchObject({
      coordinator: 'tcp://10.0.0.9:7000',
      ringHost: '10.0.0.5',
      timeoutMs: 9000,
    });
    // No GPU for a CPU backend, whatever the local rank.
    expect(parseDaemonArgs(argv, env)).not.toHaveProperty('gpu');
  });

  it('reads torchrun variables with --launcher env', () => {
    const env = {
      RANK: '2',
      WORLD_SIZE: '4',
      LOCAL_RANK: '0',
      MASTER_ADDR: 'h0',
      MASTER_PORT: '5',
    };
    expect(parseDaemonArgs(['--launcher', 'env'], env)).toMatchObject({
      coordinator: 'tcp://h0:5',
    });
  });

  it.each([
    [['--launcher', 'slurm'], {}, /cannot tell this process's rank; looked for SLURM_PROCID/],
    [['--launcher', 'pbs'], {}, /--launcher must be one of auto, slurm, k8s, env, none, got "pbs"/],
    [['--launcher', 'k8s'], { JOB_COMPLETION_INDEX: '0' }, /gives no world size/],
  ])('refuses %j', (argv, env, message) => {
    expect(() => parseDaemonArgs(argv, env)).toThrow(UsageError);
    expect(() => parseDaemonArgs(argv, env)).toThrow(message);
  });
});
