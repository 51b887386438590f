// A failure caused by the run's data, not by this process: every replica
// would hit it again, so the coordinator stops the run (no respawn, no
// restart budget used) and shows the rows, instead of replacing the worker.
import { DatasetError } from '@lorafleet/data';
import type { ErrorCode } from '@lorafleet/protocol';
import { RunConfigError } from './run-config.js';
import { StorageError } from './storage-error.js';

export class DataError extends Error {
  override name = 'DataError';
}

/** The wire code that tells the coordinator what kind of failure ended this worker. */
export function errorCodeOf(error: unknown): ErrorCode {
  if (error instanceof RunConfigError) return 'config-mismatch';
  if (error instanceof DataError || error instanceof DatasetError) return 'data';
  if (error instanceof StorageError) return 'storage';
  return 'internal';
}

/** How many rows a data error names; the rest are counted. */
const NAMED_ROWS = 5;

/** "file:12, file:15, ... (8 rows)" for the rows of sample `ids`. */
export function nameRows(file: string, rowLines: Int32Array, ids: readonly number[]): string {
  const named = ids.slice(0, NAMED_ROWS).map((id) => `${file}:${rowLines[id] ?? '?'}`);
  const more = ids.length > NAMED_ROWS ? `, ... (${ids.length} rows)` : '';
  return named.join(', ') + more;
}
