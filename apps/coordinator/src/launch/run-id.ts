// A restarted job (Slurm --requeue, a Job's backoffLimit, torchrun's restarts)
// runs the same command again: when --out already holds checkpoints of the
// same run id, it resumes from the newest instead of starting over.
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINTS_DIR } from '@lorafleet/worker';

/** The file in --out that names the run id whose checkpoints it holds. */
export const RUN_ID_FILE = 'launch-run-id';

/**
 * `out` if it holds checkpoints of `runId` (so the run resumes there), else
 * undefined; records `runId` in `out` either way.
 */
export async function resumeDirFor(
  out: string,
  runId: string | undefined,
): Promise<string | undefined> {
  if (runId === undefined) return undefined;
  const recorded = (await readFile(join(out, RUN_ID_FILE), 'utf8').catch(() => '')).trim();
  const checkpoints = await readdir(join(out, CHECKPOINTS_DIR)).catch(() => [] as string[]);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, RUN_ID_FILE), `${runId}\n`);
  return recorded === runId && checkpoints.length > 0 ? out : undefined;
}
