// A restarted job (Slurm --requeue, a Job's backoffLimit, torchrun's restarts)
// runs the same command again: when --out already holds checkpoints of the
// same run id, it resumes from the newest instead of starting over.
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINTS_DIR } from '@lorafleet/worker';

/** The file in --out that names the run id whose files it holds. */
export const RUN_ID_FILE = 'launch-run-id';

/**
 * For a restart of run `runId` in `out`: resume from `out` when it holds
 * checkpoints of it, else replace the files of its attempt that never
 * checkpointed. Undefined for a first start, or when `out` holds another run
 * (left to --resume and --overwrite). Records `runId` in `out` either way.
 */
export async function restartOf(
  out: string,
  runId: string | undefined,
): Promise<{ resume: string } | { overwrite: true } | undefined> {
  if (runId === undefined) return undefined;
  const recorded = (await readFile(join(out, RUN_ID_FILE), 'utf8').catch(() => '')).trim();
  const checkpoints = await readdir(join(out, CHECKPOINTS_DIR)).catch(() => [] as string[]);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, RUN_ID_FILE), `${runId}\n`);
  if (recorded !== runId) return undefined;
  return checkpoints.length > 0 ? { resume: out } : { overwrite: true };
}
