// What the dashboard serves from disk: the built web app (read once at start,
// so only its own files can ever be served) and a run's adapter files, by a
// whitelist of folder and file names (nothing else under the run folder).
import { constants, createReadStream, readFileSync, readdirSync, statSync } from 'node:fs';
import { type FileHandle, lstat, open, readdir, realpath } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, isAbsolute, join, relative, sep } from 'node:path';
import type { Download } from '@lorafleet/run-events';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

export interface StaticFile {
  body: Buffer;
  contentType: string;
}

/** The dashboard package's dist/ folder. */
export function dashboardDist(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@lorafleet/dashboard/package.json')), 'dist');
}

/** Every file of the built app, by URL path ("/" is index.html). */
export function loadStaticFiles(dir: string): Map<string, StaticFile> {
  const index = join(dir, 'index.html');
  try {
    statSync(index);
  } catch {
    throw new Error(
      `dashboard: the web app is not built (no ${index}): run pnpm build (or pnpm --filter @lorafleet/dashboard build)`,
    );
  }
  const files = new Map<string, StaticFile>();
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        const url = '/' + relative(dir, path).split(sep).join('/');
        const contentType = CONTENT_TYPES[extname(path)] ?? 'application/octet-stream';
        files.set(url, { body: readFileSync(path), contentType });
      }
    }
  };
  walk(dir);
  files.set('/', files.get('/index.html')!);
  return files;
}

/** The files of an adapter that may be downloaded. */
export const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'] as const;
const CHECKPOINT_NAME = /^step-\d{1,12}$/;
/** The final adapter, OUT/adapter, downloads under this name. */
export const FINAL_ADAPTER = 'adapter';

/** OUT/checkpoints/NAME/FILE or OUT/adapter/FILE, or undefined for any other name. */
export function adapterFilePath(runDir: string, name: string, file: string): string | undefined {
  if (!(ADAPTER_FILES as readonly string[]).includes(file)) return undefined;
  if (name === FINAL_ADAPTER) return join(runDir, FINAL_ADAPTER, file);
  return CHECKPOINT_NAME.test(name) ? join(runDir, 'checkpoints', name, file) : undefined;
}

/** The adapters on disk now (checkpoints get pruned; the final adapter comes at the end). */
export async function listDownloads(runDir: string): Promise<Download[]> {
  const names = await readdir(join(runDir, 'checkpoints')).catch(() => [] as string[]);
  const downloads: Download[] = [];
  for (const name of [...names.filter((n) => CHECKPOINT_NAME.test(n)).sort(), FINAL_ADAPTER]) {
    const files: string[] = [];
    for (const file of ADAPTER_FILES) {
      const real = await realFileInRun(runDir, adapterFilePath(runDir, name, file)!);
      if (real) files.push(file);
    }
    if (files.length > 0) {
      downloads.push({ name, step: name === FINAL_ADAPTER ? null : Number(name.slice(5)), files });
    }
  }
  return downloads;
}

/**
 * The real path of `path` if it is a regular file (not itself a link) whose
 * real path lies inside the run's real folder; else undefined. A checkpoint
 * folder (or OUT/checkpoints, OUT/adapter) that is a symbolic link to
 * elsewhere is thereby not followed out of the run.
 */
export async function realFileInRun(runDir: string, path: string): Promise<string | undefined> {
  const stat = await lstat(path).catch(() => undefined);
  if (!stat?.isFile()) return undefined;
  const [root, real] = await Promise.all([realpath(runDir), realpath(path)]).catch(() => []);
  if (root === undefined || real === undefined) return undefined;
  const rel = relative(root, real);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? real : undefined;
}

/** Opens `path` for reading without following a link put there since it was checked. */
async function openRegularFile(path: string): Promise<FileHandle | undefined> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!handle) return undefined;
  if ((await handle.stat()).isFile()) return handle;
  await handle.close();
  return undefined;
}

/**
 * Streams an adapter file of the run as an attachment; false when there is
 * no such regular file inside the run's real folder.
 */
export async function sendAdapterFile(
  res: ServerResponse,
  runDir: string,
  path: string,
  head: boolean,
): Promise<boolean> {
  const real = await realFileInRun(runDir, path);
  const handle = real === undefined ? undefined : await openRegularFile(real);
  if (!handle) return false;
  const stat = await handle.stat();
  const name = path.split(sep).at(-1)!;
  res.writeHead(200, {
    'Content-Type': name.endsWith('.json') ? 'application/json' : 'application/octet-stream',
    'Content-Length': stat.size,
    'Content-Disposition': `attachment; filename="${name}"`,
    'Cache-Control': 'no-store',
  });
  if (head) {
    await handle.close();
    res.end();
    return true;
  }
  await new Promise<void>((resolve) => {
    const stream = createReadStream('', { fd: handle, autoClose: true });
    stream.on('error', () => {
      res.destroy();
      resolve();
    });
    stream.on('end', resolve);
    stream.pipe(res);
  });
  return true;
}
