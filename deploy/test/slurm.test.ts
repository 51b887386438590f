// A real one-host Slurm cluster (Debian's munge, slurmctld, slurmd; see
// deploy/slurm/one-host-cluster.sh) runs the project's sbatch script with 3
// tasks: the adapter equals a local `--workers 3` run; a job in which one
// task is SIGKILLed still finishes; a job whose tasks get SIGTERM mid-run
// (scancel --signal=TERM, or Slurm requeueing it as on preemption) saves a
// checkpoint, is requeued and resumes from it, ending with the adapter of an
// uninterrupted run. The GPU script runs one task per GPU on two identical
// GPUs (copies of SwiftShader, the Vulkan driver on the CPU): each task on
// its own. The daemons are stopped by their pid files also when a test fails.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_DROPOUT_CONFIG,
  REPO_ROOT,
  SWIFTSHADER_NAME,
  TRAIN_FLAGS,
  adapterDifference,
  ensureBuilt,
  freePort,
  initTinyModel,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  stepsDone,
  driversUsed,
  identicalSwiftShaders,
  requireDeviceLayer,
  testBackends,
  until,
  writeJsonl,
} from './run-helpers.js';

const run = promisify(execFile);
const CLUSTER_SCRIPT = join(REPO_ROOT, 'deploy', 'slurm', 'one-host-cluster.sh');
const SBATCH_SCRIPT = join(REPO_ROOT, 'deploy', 'slurm', 'lorafleet-cpu.sbatch');
const GPU_SBATCH_SCRIPT = join(REPO_ROOT, 'deploy', 'slurm', 'lorafleet-gpu.sbatch');
/** Where the webgpu backend runs here (SwiftShader); only a machine marked without Vulkan lacks it. */
const withWebGpu = testBackends().includes('webgpu');
const CLI = `${process.execPath} ${join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js')}`;

let dir: string;
let cluster: string;
let model: string;
let data: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('slurm');
  cluster = join(dir, 'cluster');
  model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(40));
  const ports = [await freePort(), await freePort()];
  await run('bash', [CLUSTER_SCRIPT, 'start', cluster, ...ports.map(String)], { timeout: 60_000 });
  env = { ...process.env, SLURM_CONF: join(cluster, 'slurm.conf'), LORAFLEET: CLI };
}, 120_000);

afterAll(async () => {
  if (cluster) await run('bash', [CLUSTER_SCRIPT, 'stop', cluster], { timeout: 30_000 });
  await removeDir(dir);
});

/** Submits an sbatch script (the CPU one, 3 tasks, unless `job` says otherwise); returns the job id. */
async function submit(
  out: string,
  steps: number,
  extraEnv: Record<string, string> = {},
  job: { script: string; tasks: string[] } = { script: SBATCH_SCRIPT, tasks: ['--ntasks=3'] },
) {
  const { stdout } = await run(
    'sbatch',
    [
      ...['--parsable', ...job.tasks, '--overcommit', '--cpus-per-task=1'],
      `--output=${out}.log`,
      job.script,
      ...['--model', model, '--data', data, '--out', out, '--steps', String(steps), ...TRAIN_FLAGS],
    ],
    { env: { ...env, MASTER_PORT: String(await freePort()), ...extraEnv } },
  );
  return stdout.trim().split(';')[0]!;
}

/** The same run without Slurm, uninterrupted: `lorafleet train --workers 3` on this machine. */
async function localRun(out: string, steps: number): Promise<void> {
  await lorafleetOk([
    'train',
    ...['--model', model, '--data', data, '--out', out, '--steps', String(steps), '--workers', '3'],
    ...TRAIN_FLAGS,
  ]);
}

/** Polls the job until it leaves the queue; its final state (COMPLETED, FAILED, ...). */
async function finished(job: string, timeoutMs: number): Promise<string> {
  return until(
    `Slurm job ${job} to end`,
    async () => {
      const { stdout } = await run('scontrol', ['show', 'job', '-o', job], { env });
      const state = /JobState=(\S+)/.exec(stdout)?.[1];
      return state && !['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING'].includes(state)
        ? state
        : undefined;
    },
    timeoutMs,
    300,
  );
}

const log = (out: string) => readFile(`${out}.log`, 'utf8').catch(() => '');

/** Slurm holds a requeued job for about two minutes (Reason=BeginTime): release it once requeued. */
async function releaseRequeued(job: string): Promise<void> {
  await until(
    `Slurm job ${job} to be requeued`,
    async () => {
      const { stdout } = await run('scontrol', ['show', 'job', '-o', job], { env });
      const restarts = Number(/Restarts=(\d+)/.exec(stdout)?.[1] ?? 0);
      return restarts >= 1 && /JobState=PENDING/.test(stdout) ? true : undefined;
    },
    60_000,
  );
  // Released in the same second as the requeue, slurmd refuses the new start
  // ("Job credential revoked") and the job fails.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await run('scontrol', ['update', `JobId=${job}`, 'StartTime=now'], { env });
}

/**
 * A 3-task job of `steps` steps, interrupted by `interrupt(job)` once 5 are
 * done: it must end COMPLETED, resumed from the checkpoint SIGTERM saved,
 * with every worker kept through the signal, and the adapter of a local
 * uninterrupted `--workers 3` run.
 */
async function interruptedJob(
  name: string,
  interrupt: (job: string) => Promise<unknown>,
  jobEnv: Record<string, string> = {},
): Promise<string> {
  const steps = 16;
  const local = join(dir, `${name}-local`);
  await localRun(local, steps);
  const out = join(dir, name);
  const job = await submit(out, steps, { LORAFLEET_FAULT_STEP_DELAY_MS: '150', ...jobEnv });
  await until('step 5', async () => ((await stepsDone(out)) >= 5 ? true : undefined), 60_000);
  await interrupt(job);
  await releaseRequeued(job);
  const state = await finished(job, 120_000);
  const output = await log(out);
  expect(state, output).toBe('COMPLETED');
  expect(output).toContain('SIGTERM: finishing this step, saving and stopping the workers');
  const resumed = /resuming from \S+step-0*(\d+) at step (\d+)/.exec(output);
  expect(resumed, output).not.toBeNull();
  expect(Number(resumed![2])).toBeGreaterThanOrEqual(5);
  // Rank 0's worker waits for its coordinator too: no worker is lost to the signal.
  expect(output).not.toMatch(/ lost: /);
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
    steps: number;
    interrupted: boolean;
  };
  expect(summary).toMatchObject({ steps, interrupted: false });
  expect(await adapterDifference(local, out)).toBeLessThanOrEqual(1e-5);
  return output;
}

describe('Slurm (one-host cluster from Debian packages)', () => {
  it('runs the sbatch script with 3 tasks; the adapter equals a local --workers 3 run', async () => {
    const local = join(dir, 'local');
    await localRun(local, 6);
    const out = join(dir, 'slurm');
    const job = await submit(out, 6);
    const state = await finished(job, 120_000);
    const output = await log(out);
    expect(state, output).toBe('COMPLETED');
    for (const rank of [0, 1, 2]) {
      expect(output).toContain(`rank ${rank}/3 (local rank ${rank}) from the slurm environment`);
    }
    expect(output).toMatch(/done: 6 steps on 3 workers/);
    expect(await adapterDifference(local, out)).toBeLessThanOrEqual(1e-5);
  }, 150_000);

  it('finishes a job in which one task is SIGKILLed', async () => {
    const out = join(dir, 'killed');
    const steps = 24;
    // Slowed steps, so the kill lands mid-run.
    const job = await submit(out, steps, { LORAFLEET_FAULT_STEP_DELAY_MS: '150' });
    const pid = await until(
      "rank 2's pid",
      async () => {
        const match = /\[rank 2\]: rank \d\/3 \(pid (\d+)\)/.exec(await log(out));
        return match ? Number(match[1]) : undefined;
      },
      60_000,
    );
    await until('step 5', async () => ((await stepsDone(out)) >= 5 ? true : undefined), 60_000);
    process.kill(pid, 'SIGKILL');
    const state = await finished(job, 120_000);
    const output = await log(out);
    expect(state, output).toBe('COMPLETED');
    expect(output).toMatch(/ lost: /);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
      steps: number;
      faults: { workersLost: number };
    };
    expect(summary.steps).toBe(steps);
    expect(summary.faults.workersLost).toBe(1);
    const metrics = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    expect((JSON.parse(metrics.at(-1)!) as { workers: number }).workers).toBe(2);
  }, 150_000);

  it('resumes a job whose tasks got SIGTERM (scancel --signal=TERM): the script requeues it', async () => {
    // The batch script lives on; srun returns 143 and the script must not take
    // the interrupted run's summary.json for a finished run.
    // LORAFLEET_MAX_REQUEUES=0: a stop at a checkpoint is not a failure, and requeues anyway.
    const output = await interruptedJob(
      'sigterm',
      (job) => run('scancel', ['--signal=TERM', job], { env }),
      { LORAFLEET_MAX_REQUEUES: '0' },
    );
    expect(output).toMatch(
      /lorafleet: SIGTERM stopped the run at its checkpoint of step \d+; requeueing job/,
    );
  }, 240_000);

  it('does not requeue a run that SIGTERM stops again with no newer checkpoint (no loop without progress)', async () => {
    const out = join(dir, 'stuck');
    const job = await submit(out, 200, { LORAFLEET_FAULT_STEP_DELAY_MS: '150' });
    const stop = () => run('scancel', ['--signal=TERM', job], { env });
    await until('step 3', async () => ((await stepsDone(out)) >= 3 ? true : undefined), 60_000);
    await stop();
    await releaseRequeued(job);
    // Stopped again as soon as the requeued job resumes, before it trains a step.
    const resuming = async () => (/resuming from /.test(await log(out)) ? true : undefined);
    await until('the resume', resuming, 60_000);
    await stop();
    const state = await finished(job, 120_000);
    const output = await log(out);
    expect(output).toMatch(/SIGTERM stopped the run at its checkpoint of step \d+; requeueing/);
    expect(output).toContain('no checkpoint newer than at its last stop: not requeueing it');
    expect(state, output).toBe('FAILED');
  }, 240_000);

  it('resumes a job that Slurm requeues mid-run (as on preemption: SIGTERM, then the job again)', async () => {
    await interruptedJob('requeued', (job) => run('scontrol', ['requeue', job], { env }));
  }, 240_000);

  it.skipIf(!withWebGpu)(
    'runs the GPU sbatch script, one task per GPU, on two identical GPUs: each task on its own',
    async () => {
      requireDeviceLayer();
      const twins = identicalSwiftShaders(dir, 2);
      const out = join(dir, 'gpu');
      const job = await submit(
        out,
        3,
        {
          VK_DRIVER_FILES: twins.driverFiles,
          VK_ICD_FILENAMES: twins.driverFiles,
          VK_LOADER_DEBUG: 'driver', // each device's driver file, in the job's log
          LORAFLEET_DAWN_FLAGS: '',
        },
        // One node of two "GPUs", without GRES (the one-host cluster has none configured).
        { script: GPU_SBATCH_SCRIPT, tasks: ['--gres=none', '--nodes=1', '--ntasks-per-node=2'] },
      );
      const state = await finished(job, 180_000);
      const output = await log(out);
      expect(state, output).toBe('COMPLETED');
      // SLURM_LOCALID picks the GPU; the two share one name, so the device-select layer tells them apart.
      expect(output).toContain(`gpu 0: ${SWIFTSHADER_NAME} (1st of 2 so named)`);
      expect(output).toContain(`gpu 1: ${SWIFTSHADER_NAME} (2nd of 2 so named)`);
      expect(new Set(driversUsed(output))).toEqual(new Set(twins.libraries));
      const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
        steps: number;
        interrupted: boolean;
      };
      expect(summary).toMatchObject({ steps: 3, interrupted: false });
    },
    240_000,
  );
});
