// A file the run must write could not be written: a full disk, a quota, a
// read-only or forbidden folder. A replacement worker would hit the same
// wall, so the coordinator stops the run (keeping the last good checkpoint)
// instead of respawning workers until its restarts are spent.
export class StorageError extends Error {
  override name = 'StorageError';
}

/** errno codes that say "this storage refuses writes", with what a user can do about each. */
const REFUSALS: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EFBIG: 'a file exceeds the size limit of the process or the file system',
  EROFS: 'the file system is read-only',
  EACCES: 'no permission to write there',
  EPERM: 'no permission to write there',
};

/** `error` as a StorageError naming `path` when storage refused the write; otherwise `error` itself. */
export function asStorageError(error: unknown, path: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const why = code === undefined ? undefined : REFUSALS[code];
  if (why === undefined) return error;
  return new StorageError(`cannot write ${path}: ${(error as Error).message} (${why})`);
}
