// The disk fills up while rank 0 writes a checkpoint (issue 15), on a real
// full file system: the run's folder is a 512 KiB tmpfs, mounted in a mount
// namespace of the run's own (`unshare -rm`: no root needed where user
// namespaces are allowed, and nothing left mounted afterwards). While rank 0
// pauses between the adapter and the optimizer file (LORAFLEET_FAULT_PAUSE),
// the test fills the tmpfs through /proc/PID/root. The run must stop with an
// error naming the path and the last good checkpoint, remove the partial
// folder, leave no worker behind, and resume from that checkpoint.
import { mkdir, readdir, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '@lorafleet/worker';
import { checkpointDir, numberedPatternRecords, removeDir, trainFixture } from './helpers.js';
import { CLI_BIN, isRunning, killLeftovers, runToEnd, start } from './fault-runs.js';

let dir: string;
let model: string;
let data: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('disk-full', numberedPatternRecords(40)));
}, 120_000);

afterEach(killLeftovers);
afterAll(() => removeDir(dir));

/**
 * `sh -c` in a new mount namespace: a tmpfs on OUT ($0), then the command;
 * the run's files are copied to $KEEP before the namespace (and the tmpfs) go.
 */
const IN_SMALL_DISK =
  'mount -t tmpfs -o size=512k tmpfs "$0" || exit 90; "$@"; code=$?; ' +
  'rm -f "$0/filler"; cp -a "$0/." "$KEEP/"; exit $code';

describe('the disk fills up during a checkpoint', () => {
  it('stops naming the path and the last good checkpoint, which stays intact and resumes', async () => {
    const out = join(dir, 'small-disk');
    const kept = join(dir, 'kept');
    await mkdir(out);
    await mkdir(kept);
    const args = (o: string, ...more: string[]) => [
      'train',
      ...['--model', model, '--data', data, '--out', o, '--workers', '2', '--steps', '8'],
      ...['--batch-size', '6', '--lora-dropout', '0', '--lr', '1e-2', '--seed', '5'],
      ...['--checkpoint-every', '2', ...more],
    ];
    const run = start(args(out), { LORAFLEET_FAULT_PAUSE: 'checkpoint:1500', KEEP: kept }, [
      'unshare',
      '-rm',
      ...['sh', '-c', IN_SMALL_DISK, out, process.execPath, CLI_BIN],
    ]);
    // Rank 0 has written step 4's adapter: fill the disk, leaving 8 KiB (less than the optimizer file).
    await run.untilPause('checkpoint', { step: 4 });
    const inside = `/proc/${run.child.pid}/root${out}`;
    const fs = await statfs(inside);
    await writeFile(join(inside, 'filler'), Buffer.alloc(fs.bavail * fs.bsize - 8192));
    const t0 = performance.now();
    const result = await run.done;
    console.log(
      `disk full mid-checkpoint: stopped ${((performance.now() - t0) / 1000).toFixed(2)} s after the disk filled`,
    );
    const { output } = result;
    expect(result.code, output).toBe(1);
    expect(output).toMatch(/cannot write \S*\.tmp-step-000004: ENOSPC: no space left on device/);
    expect(output).toContain(`the last good checkpoint is ${checkpointDir(out, 2)} (step 2)`);
    expect(output).toContain(`--resume ${out}`);
    expect(output).not.toMatch(/respawned/);
    // The partial folder is gone, the previous checkpoint verifies, no worker is left.
    expect(await readdir(join(kept, 'checkpoints'))).toEqual(['step-000002']);
    await readCheckpoint(checkpointDir(kept, 2));
    const pids = [...output.matchAll(/worker \d+ \(pid (\d+)\) said Hello/g)].map((m) =>
      Number(m[1]),
    );
    // Killed as the coordinator exits; the kernel may take a moment to reap them.
    await expect.poll(() => pids.filter(isRunning), { timeout: 5000 }).toEqual([]);

    // With space again, the run continues from that checkpoint.
    const resumed = await runToEnd(args(kept, '--resume', kept));
    expect(resumed.code, resumed.output).toBe(0);
    expect(resumed.output).toMatch(/resuming from .*step-000002 at step 2/);
    expect(await readdir(join(kept, 'checkpoints'))).toEqual([
      'step-000004',
      'step-000006',
      'step-000008',
    ]);
  }, 120_000);
});
