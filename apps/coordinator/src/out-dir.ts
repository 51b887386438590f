// Output folders, checked before any work starts: a command that would
// overwrite an earlier result, write into its own input, or fail on a file
// where a folder belongs says so by flag and path, instead of a raw
// EEXIST/EACCES/EISDIR after minutes of work.
import { constants } from 'node:fs';
import { access, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { UsageError } from './args.js';

/** A folder the output must not be, nor lie inside (the command's inputs). */
export interface InputFolder {
  /** e.g. '--model' */
  flag: string;
  path: string;
  /** What overwriting it would destroy, e.g. 'the base weights'. */
  holds: string;
}

export interface OutDirRules {
  /** The option that named the folder, e.g. '--out'. */
  flag: string;
  /** Refuse a folder that already holds files (an earlier result). */
  mustBeEmpty: boolean;
  /** How to go ahead anyway when the folder is not empty, e.g. 'pass --overwrite'. */
  overwriteHint?: string;
  /** Inputs the output must stay out of, even when overwriting is allowed. */
  inputs?: readonly InputFolder[];
}

/** The code of a Node file-system error, if it is one. */
function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

const FS_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'something already exists there',
  EISDIR: 'it is a folder, where a file was expected',
  ENOTDIR: 'a part of the path is a file, not a folder',
  ENOSPC: 'the disk is full',
  EROFS: 'the file system is read-only',
  ENOENT: 'a part of the path does not exist',
  ENAMETOOLONG: 'the path is too long',
};

/**
 * An Error that says what failed, on which path and why in words, for a
 * file-system error (keeping the code, e.g. "(EACCES)", for a search engine).
 */
export function describeFsError(err: unknown, what: string, path: string): Error {
  const code = errnoCode(err);
  const reason = code && FS_REASONS[code];
  if (!reason) return err instanceof Error ? err : new Error(String(err));
  const at = (err as NodeJS.ErrnoException).path;
  const where = at && resolve(at) !== resolve(path) ? ` (at ${at})` : '';
  return new Error(`${what} ${path}: ${reason}${where} (${code})`);
}

/** The closest existing folder at or above `path`, or the error on the way. */
async function nearestExisting(path: string): Promise<string> {
  let at = path;
  for (;;) {
    try {
      await stat(at);
      return at;
    } catch (err) {
      const parent = dirname(at);
      // ENOTDIR: a file on the way, reported by the caller as such.
      const missing = errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR';
      if (!missing || parent === at) throw err;
      at = parent;
    }
  }
}

/** `path` with symlinks of its existing part resolved, so two spellings compare equal. */
async function realPathOf(path: string): Promise<string> {
  const absolute = resolve(path);
  const existing = await nearestExisting(absolute);
  return join(await realpath(existing), relative(existing, absolute));
}

function isSameOrInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

async function refuseInputs(path: string, out: string, rules: OutDirRules): Promise<void> {
  for (const input of rules.inputs ?? []) {
    const inputReal = await realPathOf(input.path).catch(() => resolve(input.path));
    if (!isSameOrInside(out, inputReal)) continue;
    const same = out === inputReal;
    throw new UsageError(
      `${rules.flag} ${path} is ${same ? 'the same folder as' : 'inside'} ${input.flag} ${input.path}` +
        `${same && resolve(path) !== resolve(input.path) ? ` (both are ${out})` : ''}: ` +
        `writing there would overwrite ${input.holds}; choose another ${rules.flag} folder`,
    );
  }
}

async function refuseExisting(path: string, rules: OutDirRules): Promise<void> {
  const info = await stat(path);
  if (!info.isDirectory()) {
    throw new UsageError(
      `${rules.flag} ${path} is a file, not a folder; give a path for a new folder`,
    );
  }
  await access(path, constants.W_OK).catch((err: unknown) => {
    throw new UsageError(describeFsError(err, `${rules.flag}: cannot write in`, path).message);
  });
  if (!rules.mustBeEmpty) return;
  const entries = (await readdir(path)).sort();
  if (entries.length === 0) return;
  const shown = entries.slice(0, 5).join(', ') + (entries.length > 5 ? ', ...' : '');
  throw new UsageError(
    `${rules.flag} ${path} already holds an earlier result (${shown}); ` +
      `choose a new or empty folder${rules.overwriteHint ? `, or ${rules.overwriteHint}` : ''}`,
  );
}

/**
 * Checks that `path` can be used as the output folder: not an input folder
 * nor inside one, not a file, writable, and empty if `mustBeEmpty`. Creates
 * nothing. Throws a UsageError (exit 2) naming the flag and the path.
 * Returns the absolute path.
 */
export async function checkOutDir(path: string, rules: OutDirRules): Promise<string> {
  const out = await realPathOf(path).catch((err: unknown) => {
    throw new UsageError(describeFsError(err, `${rules.flag}: cannot use`, path).message);
  });
  await refuseInputs(path, out, rules);
  const existing = await nearestExisting(resolve(path));
  if (existing === resolve(path)) {
    await refuseExisting(path, rules);
    return resolve(path);
  }
  const parent = await stat(existing);
  if (!parent.isDirectory()) {
    throw new UsageError(
      `${rules.flag} ${path} cannot be created: ${existing} is a file, not a folder`,
    );
  }
  await access(existing, constants.W_OK).catch((err: unknown) => {
    throw new UsageError(
      describeFsError(err, `${rules.flag} ${path} cannot be created in`, existing).message,
    );
  });
  return resolve(path);
}
