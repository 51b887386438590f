// What the dashboard serves from disk: the built web app (read once at start,
// so only its own files can ever be served) and a run's adapter files, by a
// whitelist of folder and file names (nothing else under the run folder).
import { createReadStream, readFileSync, readdirSync, statSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join, relative, sep } from 'node:path';
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
      const stat = await lstat(adapterFilePath(runDir, name, file)!).catch(() => undefined);
      if (stat?.isFile()) files.push(file);
    }
    if (files.length > 0) {
      downloads.push({ name, step: name === FINAL_ADAPTER ? null : Number(name.slice(5)), files });
    }
  }
  return downloads;
}

/** Streams an adapter file as an attachment; false when there is no such regular file. */
export async function sendAdapterFile(
  res: ServerResponse,
  path: string,
  head: boolean,
): Promise<boolean> {
  // lstat: a symbolic link planted in the run folder is not followed.
  const stat = await lstat(path).catch(() => undefined);
  if (!stat?.isFile()) return false;
  const name = path.split(sep).at(-1)!;
  res.writeHead(200, {
    'Content-Type': name.endsWith('.json') ? 'application/json' : 'application/octet-stream',
    'Content-Length': stat.size,
    'Content-Disposition': `attachment; filename="${name}"`,
    'Cache-Control': 'no-store',
  });
  if (head) {
    res.end();
    return true;
  }
  await new Promise<void>((resolve) => {
    const stream = createReadStream(path);
    stream.on('error', () => {
      res.destroy();
      resolve();
    });
    stream.on('end', resolve);
    stream.pipe(res);
  });
  return true;
}
