// Training checkpoints on the coordinator's side: the format and its writer
// live in @lorafleet/worker (rank 0 writes a distributed run's checkpoints);
// here, which checkpoints a run folder holds, pruning, and the choice of the
// one to resume from.
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CHECKPOINTS_DIR,
  CheckpointError,
  MANIFEST_FILE,
  STEP_DIR,
  checkpointName,
  verifyCheckpoint,
} from '@lorafleet/worker';

export {
  CHECKPOINTS_DIR,
  CheckpointError,
  type CheckpointContents,
  MANIFEST_FILE,
  OPTIMIZER_FILE,
  TRAINER_STATE_FILE,
  type TrainerState,
  checkpointName,
  commitCheckpoint,
  manifestSha256,
  readCheckpointTrainState,
  readOptimizerState,
  readTrainerState,
  startCheckpoint,
  verifyCheckpoint,
  writeCheckpoint,
} from '@lorafleet/worker';

/** Step numbers of the finished checkpoints under OUT/checkpoints, ascending. */
export async function listCheckpoints(out: string): Promise<number[]> {
  const names = await readdir(join(out, CHECKPOINTS_DIR)).catch(() => [] as string[]);
  return names
    .map((n) => STEP_DIR.exec(n)?.[1])
    .filter((s): s is string => s !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** Deletes all but the newest `keep` checkpoints. */
export async function pruneCheckpoints(out: string, keep: number): Promise<void> {
  const steps = await listCheckpoints(out);
  for (const step of steps.slice(0, Math.max(0, steps.length - keep))) {
    await rm(join(out, CHECKPOINTS_DIR, checkpointName(step)), { recursive: true, force: true });
  }
}

const isDir = (path: string) =>
  stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );

/**
 * The checkpoint to resume from: DIR itself when it holds a manifest, else the
 * newest checkpoint under DIR/checkpoints that passes verification; each one
 * skipped is reported through `warn`.
 */
export async function findResumeCheckpoint(
  dir: string,
  warn: (line: string) => void,
): Promise<string> {
  if (!(await isDir(dir))) throw new CheckpointError(`--resume ${dir}: no such folder`);
  const own = await stat(join(dir, MANIFEST_FILE)).catch(() => null);
  if (own || STEP_DIR.test(dir.replace(/\/+$/, '').split('/').pop() ?? '')) {
    await verifyCheckpoint(dir);
    return dir;
  }
  const steps = (await listCheckpoints(dir)).reverse();
  if (steps.length === 0)
    throw new CheckpointError(
      `--resume ${dir}: no checkpoints (expected ${join(dir, CHECKPOINTS_DIR, 'step-NNNNNN')})`,
    );
  for (const [i, step] of steps.entries()) {
    const candidate = join(dir, CHECKPOINTS_DIR, checkpointName(step));
    try {
      await verifyCheckpoint(candidate);
      return candidate;
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      const next = steps[i + 1];
      warn(
        `checkpoint ${checkpointName(step)} is unusable: ${err.message}; ` +
          (next === undefined ? 'no earlier checkpoint left' : `using ${checkpointName(next)}`),
      );
    }
  }
  throw new CheckpointError(`--resume ${dir}: every checkpoint failed verification`);
}
