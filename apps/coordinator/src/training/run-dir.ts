// `train --out DIR`: a run folder is never mixed with an earlier run's files.
// Without --resume, a folder that holds a run is refused (or, with
// --overwrite, that run's files are removed first); a path that cannot be a
// folder, or cannot be written, is refused by name before anything loads.
import { access, constants, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../args.js';

/**
 * What a run that trained writes at the top of its folder (loop.ts, checkpoints.ts, report.ts).
 * events.jsonl alone is a run that failed before its first step: it is simply replaced.
 */
export const RUN_FILES = [
  'metrics.jsonl',
  'ledger.jsonl',
  'summary.json',
  'checkpoints',
  'adapter',
  'model',
] as const;

export interface RunDirOptions {
  /** --resume was given: the folder's run continues. */
  resume: boolean;
  /** --overwrite: an earlier run's files are removed. */
  overwrite: boolean;
}

/** Makes `out` ready for this run; throws UsageError saying what is wrong with it and what to do. */
export async function claimRunDir(out: string, options: RunDirOptions): Promise<void> {
  const info = await stat(out).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw new UsageError(`train: --out ${out}: cannot be read (${error.code ?? error.message})`);
  });
  if (info && !info.isDirectory()) {
    throw new UsageError(`train: --out ${out} is a file, not a folder; name a folder for the run`);
  }
  if (!info) {
    await mkdir(out, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
      throw new UsageError(
        `train: --out ${out}: cannot create the folder (${error.code ?? error.message}); ` +
          'check the path and its permissions',
      );
    });
  }
  await access(out, constants.W_OK).catch(() => {
    throw new UsageError(`train: --out ${out} is not writable by this user`);
  });
  if (options.resume) return;
  const entries = new Set(await readdir(out));
  const earlier = RUN_FILES.filter((f) => entries.has(f));
  if (earlier.length === 0) return;
  if (!options.overwrite) {
    throw new UsageError(
      `train: --out ${out} holds an earlier run (${earlier.join(', ')}); ` +
        `continue it with --resume ${out}, choose another --out, or replace it with --overwrite`,
    );
  }
  for (const f of earlier) await rm(join(out, f), { recursive: true, force: true });
  console.warn(`warning: --overwrite: removed the earlier run in ${out} (${earlier.join(', ')})`);
}
