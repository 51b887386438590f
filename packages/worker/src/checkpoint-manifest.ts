// A checkpoint folder's checksum manifest (manifest.json) and the check every
// resume passes before it uses a byte: each listed file is there with the
// listed size and sha256, nothing else is in the folder, and the manifest is
// in the exact form its writer gives it (so a damaged manifest is caught too:
// any change to it either breaks that form or changes a name, size, checksum
// or step, which the files or trainer_state.json then contradict).
import { createHash } from 'node:crypto';
import { lstat, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export const MANIFEST_FILE = 'manifest.json';
/** The checkpoint format version, in manifest.json and trainer_state.json. */
export const CHECKPOINT_FORMAT_VERSION = 1;

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export interface ManifestEntry {
  sha256: string;
  bytes: number;
}

export interface CheckpointManifest {
  formatVersion: number;
  step: number;
  files: Record<string, ManifestEntry>;
}

/** A folder entry as the verification sees it: a file's bytes are read only when its size is right. */
export type FoundEntry =
  { kind: 'file'; size: number; bytes: Uint8Array | null } | { kind: 'other' };

export const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

// Plain names only: a manifest must not point outside its folder.
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** manifest.json for these files (name -> bytes), in the given order. */
export function manifestText(step: number, files: ReadonlyMap<string, Uint8Array>): string {
  const entries: Record<string, ManifestEntry> = {};
  for (const [name, bytes] of files)
    entries[name] = { sha256: sha256Hex(bytes), bytes: bytes.byteLength };
  return canonical({ formatVersion: CHECKPOINT_FORMAT_VERSION, step, files: entries });
}

function canonical(m: CheckpointManifest): string {
  const files: Record<string, ManifestEntry> = {};
  for (const [name, e] of Object.entries(m.files))
    files[name] = { sha256: e.sha256, bytes: e.bytes };
  return `${JSON.stringify({ formatVersion: m.formatVersion, step: m.step, files }, null, 2)}\n`;
}

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/**
 * Parses manifest.json, refusing anything but what manifestText() writes for
 * a checkpoint holding at least `required`; throws CheckpointError.
 */
export function parseManifest(
  bytes: Uint8Array,
  source: string,
  required: readonly string[],
): CheckpointManifest {
  // Annotated so that TypeScript narrows after calls to it.
  const bad: (what: string) => never = (what) => {
    throw new CheckpointError(`${source}: ${what}; the manifest is damaged`);
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    bad(`not valid JSON (${(err as Error).message})`);
  }
  if (!isRecord(json)) bad('not a JSON object');
  const { formatVersion, step, files } = json;
  if (formatVersion !== CHECKPOINT_FORMAT_VERSION) {
    throw new CheckpointError(
      `${source}: format version ${JSON.stringify(formatVersion)}, this lorafleet reads ${CHECKPOINT_FORMAT_VERSION}`,
    );
  }
  if (!isCount(step)) bad(`step ${JSON.stringify(step)} is not a non-negative integer`);
  if (!isRecord(files)) bad('"files" is not an object');
  for (const [name, entry] of Object.entries(files)) {
    if (!FILE_NAME.test(name) || name === MANIFEST_FILE)
      bad(`lists a bad file name ${JSON.stringify(name)}`);
    if (!isRecord(entry) || typeof entry.sha256 !== 'string' || !SHA256.test(entry.sha256))
      bad(`"${name}" has no lowercase hex sha256`);
    if (!isCount(entry.bytes)) bad(`"${name}" has no byte size`);
  }
  for (const name of required) if (!Object.hasOwn(files, name)) bad(`lists no ${name}`);
  const manifest = { formatVersion, step, files } as CheckpointManifest;
  const text = new TextDecoder().decode(bytes);
  if (canonical(manifest) !== text) bad('its text differs from what its writer produces');
  return manifest;
}

/** What is wrong with the folder's files against the manifest, one phrase per file. */
export function fileProblems(
  manifest: CheckpointManifest,
  found: ReadonlyMap<string, FoundEntry>,
): string[] {
  const problems: string[] = [];
  for (const [name, { sha256, bytes }] of Object.entries(manifest.files)) {
    const f = found.get(name);
    if (!f) problems.push(`${name}: missing`);
    else if (f.kind !== 'file') problems.push(`${name}: not a regular file`);
    else if (f.size !== bytes)
      problems.push(
        `${name}: ${f.size} bytes, the manifest lists ${bytes} (${f.size < bytes ? 'truncated' : 'grown'})`,
      );
    else {
      const actual = f.bytes ? sha256Hex(f.bytes) : '';
      if (actual !== sha256)
        problems.push(
          `${name}: sha256 ${actual.slice(0, 12)}… differs from the manifest's ${sha256.slice(0, 12)}… (modified or corrupt)`,
        );
    }
  }
  for (const name of found.keys())
    if (!Object.hasOwn(manifest.files, name))
      problems.push(`${name}: not in the manifest (an extra file)`);
  return problems;
}

/** The folder's entries besides manifest.json; listed files of the listed size are read. */
async function readFolder(
  dir: string,
  manifest: CheckpointManifest,
): Promise<Map<string, FoundEntry>> {
  const found = new Map<string, FoundEntry>();
  for (const name of (await readdir(dir)).sort()) {
    if (name === MANIFEST_FILE) continue;
    const path = join(dir, name);
    const s = await lstat(path);
    if (!s.isFile()) {
      found.set(name, { kind: 'other' });
      continue;
    }
    const listed = Object.hasOwn(manifest.files, name) ? manifest.files[name] : undefined;
    // Reading only what has the listed size bounds the memory a damaged folder can take.
    const bytes = listed?.bytes === s.size ? new Uint8Array(await readFile(path)) : null;
    found.set(name, { kind: 'file', size: bytes?.byteLength ?? s.size, bytes });
  }
  return found;
}

/**
 * Reads a checkpoint folder and checks it against its manifest; returns the
 * manifest and the verified bytes of every listed file. Throws one
 * CheckpointError naming the folder and each bad file.
 */
export async function readVerifiedFiles(
  dir: string,
  required: readonly string[],
): Promise<{ manifest: CheckpointManifest; files: Map<string, Uint8Array> }> {
  const manifestPath = join(dir, MANIFEST_FILE);
  const manifestBytes = await readFile(manifestPath).catch((err: NodeJS.ErrnoException) => {
    throw new CheckpointError(
      err.code === 'ENOENT'
        ? `${manifestPath}: missing; the checkpoint is incomplete`
        : `${manifestPath}: unreadable (${err.message})`,
    );
  });
  const manifest = parseManifest(manifestBytes, manifestPath, required);
  const found = await readFolder(dir, manifest).catch((err: NodeJS.ErrnoException) => {
    if (err.code === undefined) throw err;
    throw new CheckpointError(`${dir}: unreadable (${err.message})`);
  });
  const problems = fileProblems(manifest, found);
  if (problems.length > 0) throw new CheckpointError(`${dir}: ${problems.join('; ')}`);
  const files = new Map<string, Uint8Array>();
  for (const name of Object.keys(manifest.files)) {
    const f = found.get(name);
    if (f?.kind === 'file' && f.bytes) files.set(name, f.bytes);
  }
  return { manifest, files };
}
