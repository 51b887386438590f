// The tensorflow backends: @tensorflow/tfjs-node (CPU) and
// @tensorflow/tfjs-node-gpu (CUDA), both optional and NOT dependencies of this
// project: their install scripts download libtensorflow (2.9, from
// storage.googleapis.com) and the GPU build needs CUDA 11.2 + cuDNN 8.1 on
// Linux x64. When a user has installed one, a guarded import loads it; it
// registers tfjs's 'tensorflow' backend (both packages use that name).
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tf } from './tf.js';

export type TfjsNodeVariant = 'tensorflow' | 'tensorflow-gpu';

export const TFJS_NODE_PACKAGES: Readonly<Record<TfjsNodeVariant, string>> = {
  tensorflow: '@tensorflow/tfjs-node',
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
};

/** The tfjs version these backends must match (the project's @tensorflow/tfjs). */
export const TFJS_VERSION = '4.22.0';

/** Finds a package's entry point, or undefined; injectable for tests. */
export type Resolver = (specifier: string) => string | undefined;
/** Imports a resolved entry point; injectable for tests. */
export type Importer = (path: string) => Promise<unknown>;

/**
 * Looks for the package from this module (a dependency of the workspace root
 * or of core), from the working directory and from the main script (a
 * dependency of the app that runs us).
 */
export const defaultResolver: Resolver = (specifier) => {
  const bases = [import.meta.url, join(process.cwd(), 'package.json')];
  if (process.argv[1]) bases.push(process.argv[1]);
  for (const base of bases) {
    try {
      return createRequire(base).resolve(specifier);
    } catch {
      // not from here
    }
  }
  return undefined;
};

const defaultImporter: Importer = (path) => import(pathToFileURL(path).href);

let loaded: { variant: TfjsNodeVariant; cudaVisibleDevices: string | undefined } | undefined;

function notInstalled(variant: TfjsNodeVariant): Error {
  const pkg = TFJS_NODE_PACKAGES[variant];
  const gpu =
    variant === 'tensorflow-gpu'
      ? ' It runs on Linux x64 with an NVIDIA GPU, CUDA 11.2 and cuDNN 8.1 only ' +
        '(libcudart.so.11.0, libcudnn.so.8); with another CUDA stack use --backend webgpu.'
      : '';
  return new Error(
    `--backend ${variant} needs ${pkg}@${TFJS_VERSION}, which is not installed (it is optional: ` +
      `its install script downloads libtensorflow from storage.googleapis.com).${gpu} ` +
      `Install it where the worker runs (\`pnpm add ${pkg}@${TFJS_VERSION}\`, allowing its ` +
      `build script), or use --backend wasm`,
  );
}

/** Turns a failed import into an error that names what is missing. */
export function explainLoadError(variant: TfjsNodeVariant, error: unknown): Error {
  const pkg = TFJS_NODE_PACKAGES[variant];
  const message = (error as Error)?.message ?? String(error);
  if (/tfjs_binding\.node|napi-v\d/.test(message)) {
    return new Error(
      `${pkg} is installed but its native binding is missing: its install script did not run ` +
        `(pnpm without allowBuilds, --ignore-scripts) or could not download libtensorflow. ` +
        `Rebuild it with internet access (\`npm rebuild ${pkg}\`). (${message.split('\n')[0]})`,
    );
  }
  if (/libcud|libcublas|libcufft|libcurand|libcusolver|libcusparse/.test(message)) {
    return new Error(
      `${pkg} cannot load the CUDA libraries it was built for (CUDA 11.2, cuDNN 8.1): ` +
        `install them and put them on LD_LIBRARY_PATH, or use --backend webgpu. ` +
        `(${message.split('\n')[0]})`,
    );
  }
  if (/libtensorflow/.test(message)) {
    return new Error(
      `${pkg} cannot load libtensorflow (its install script downloads it into the package's ` +
        `deps/ folder): rebuild it with \`npm rebuild ${pkg}\`. (${message.split('\n')[0]})`,
    );
  }
  return new Error(`${pkg} failed to load: ${message}`);
}

/**
 * CUDA_VISIBLE_DEVICES for GPU `gpu`: an index into the devices already
 * visible when the variable is set, else the physical index.
 */
export function cudaDevicesFor(gpu: number, current: string | undefined): string {
  if (current === undefined || current.trim() === '') return String(gpu);
  const visible = current
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const pick = visible[gpu];
  if (pick === undefined) {
    throw new Error(
      `--gpu ${gpu}: CUDA_VISIBLE_DEVICES=${current} makes only ${visible.length} GPU(s) visible`,
    );
  }
  return pick;
}

/**
 * Loads tfjs-node or tfjs-node-gpu so that its 'tensorflow' backend is
 * registered; the caller then sets the backend. For the GPU build, `gpu`
 * picks the CUDA device through CUDA_VISIBLE_DEVICES, which TensorFlow reads
 * once: a second call may not change it, nor switch between the two packages.
 */
export async function loadTfjsNode(
  variant: TfjsNodeVariant,
  gpu?: number,
  resolve: Resolver = defaultResolver,
  load: Importer = defaultImporter,
): Promise<void> {
  if (gpu !== undefined && variant !== 'tensorflow-gpu') {
    throw new Error(`--gpu applies to GPU backends (webgpu, tensorflow-gpu), not ${variant}`);
  }
  if (loaded) {
    if (loaded.variant !== variant) {
      throw new Error(
        `${TFJS_NODE_PACKAGES[loaded.variant]} is already loaded in this process; ` +
          `--backend ${variant} needs a fresh process`,
      );
    }
    if (
      gpu !== undefined &&
      cudaDevicesFor(gpu, loaded.cudaVisibleDevices) !== process.env.CUDA_VISIBLE_DEVICES
    ) {
      throw new Error(
        `--gpu ${gpu}: this process already uses CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES}`,
      );
    }
    return;
  }
  const pkg = TFJS_NODE_PACKAGES[variant];
  const entry = resolve(pkg);
  if (entry === undefined) throw notInstalled(variant);
  const before = process.env.CUDA_VISIBLE_DEVICES;
  if (gpu !== undefined) process.env.CUDA_VISIBLE_DEVICES = cudaDevicesFor(gpu, before);
  try {
    await load(entry);
  } catch (error) {
    if (before === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
    else process.env.CUDA_VISIBLE_DEVICES = before;
    throw explainLoadError(variant, error);
  }
  loaded = { variant, cudaVisibleDevices: before };
  if (!tf.findBackendFactory('tensorflow')) {
    throw new Error(
      `${pkg} loaded but registered no 'tensorflow' backend with this project's tfjs ` +
        `(${tf.version_core}): install ${pkg}@${TFJS_VERSION} to match @tensorflow/tfjs`,
    );
  }
}

/** Forgets what loadTfjsNode() loaded (tests that inject a fake package). */
export function resetTfjsNodeForTests(): void {
  loaded = undefined;
}
