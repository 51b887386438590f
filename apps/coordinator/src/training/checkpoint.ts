// Training checkpoints on the coordinator's side: the format and its writer
// live in @lorafleet/worker (rank 0 writes a distributed run's checkpoints);
// here, which checkpoints a run folder holds, pruning, and the choice of the
// one to resume from.
import { readdir, rm, stat } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';
import {
  CHECKPOINTS_DIR,
  CheckpointError,
  MANIFEST_FILE,
  STEP_DIR,
  TRAINER_STATE_FILE,
  type VerifiedCheckpoint,
  checkpointName,
  readCheckpoint,
} from '@lorafleet/worker';

export {
  CHECKPOINTS_DIR,
  CheckpointError,
  type CheckpointContents,
  MANIFEST_FILE,
  OPTIMIZER_FILE,
  TRAINER_STATE_FILE,
  type TrainerState,
  type VerifiedCheckpoint,
  checkpointName,
  commitCheckpoint,
  manifestSha256,
  readCheckpoint,
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

/**
 * Deletes all but the newest `keep` checkpoints at or below `newest` (the one
 * just written, complete and renamed into place: so with keep >= 2 the one
 * before it survives as the fallback). Checkpoints above `newest` belong to a
 * run that this one resumed before their step (they were damaged, or the
 * resume named an earlier folder): they are deleted, so that a later
 * `--resume OUT` cannot pick them over this run's own. `spare`: a step kept
 * beside those (the best evaluated one's, --load-best-model-at-end).
 */
export async function pruneCheckpoints(
  out: string,
  keep: number,
  newest?: number,
  spare?: number,
): Promise<void> {
  const steps = await listCheckpoints(out);
  const last = newest ?? steps.at(-1) ?? 0;
  const older = steps.filter((s) => s <= last);
  const doomed = [
    ...steps.filter((s) => s > last),
    ...older.slice(0, Math.max(0, older.length - Math.max(1, keep))),
  ].filter((s) => s !== spare);
  for (const step of doomed) {
    await rm(join(out, CHECKPOINTS_DIR, checkpointName(step)), { recursive: true, force: true });
  }
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** A folder that is itself a checkpoint (whole or not), rather than a run folder holding some. */
async function isCheckpointFolder(dir: string): Promise<boolean> {
  if (STEP_DIR.test(basename(resolve(dir)))) return true;
  return (await exists(join(dir, MANIFEST_FILE))) || (await exists(join(dir, TRAINER_STATE_FILE)));
}

/** A CheckpointError's message with the checkpoint's own path left out (the warning names it). */
function reason(err: CheckpointError, dir: string): string {
  return err.message.replaceAll(`${dir}: `, '').replaceAll(`${dir}${sep}`, '');
}

/**
 * The checkpoint to resume from, read and verified (readCheckpoint). FROM is
 * a checkpoint folder (used as is; a damaged one is an error) or a run folder:
 * then its checkpoints are tried newest first, and each one rejected is
 * reported through `warn`, in one line naming its bad files and the
 * checkpoint used instead. No valid checkpoint is an error.
 */
export async function resumeCheckpoint(
  from: string,
  warn: (line: string) => void,
): Promise<VerifiedCheckpoint> {
  const isDir = await stat(from).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new CheckpointError(`--resume ${from}: no such folder`);
  if (await isCheckpointFolder(from)) {
    try {
      return await readCheckpoint(from);
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      throw new CheckpointError(
        `--resume ${from}: this checkpoint is unusable: ${reason(err, from)}. ` +
          'Resume from its run folder instead to fall back to the newest valid checkpoint.',
      );
    }
  }
  const steps = (await listCheckpoints(from)).reverse();
  if (steps.length === 0)
    throw new CheckpointError(
      `--resume ${from}: no checkpoints (expected ${join(from, CHECKPOINTS_DIR, 'step-NNNNNN')})`,
    );
  const rejected: [string, string][] = [];
  let chosen: VerifiedCheckpoint | undefined;
  for (const step of steps) {
    const candidate = join(from, CHECKPOINTS_DIR, checkpointName(step));
    try {
      chosen = await readCheckpoint(candidate);
      break;
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      rejected.push([candidate, reason(err, candidate)]);
    }
  }
  const instead = chosen ? `using ${basename(chosen.dir)}` : 'no valid checkpoint is left';
  for (const [dir, why] of rejected) warn(`checkpoint ${dir} is unusable: ${why}; ${instead}`);
  if (!chosen)
    throw new CheckpointError(
      `--resume ${from}: none of its ${steps.length} checkpoints is usable (each is reported above); ` +
        'restore one from a backup, or start again without --resume',
    );
  return chosen;
}

/** resumeCheckpoint(), for callers that only need the folder. */
export async function findResumeCheckpoint(
  from: string,
  warn: (line: string) => void,
): Promise<string> {
  return (await resumeCheckpoint(from, warn)).dir;
}
