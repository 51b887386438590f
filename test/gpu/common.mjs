// What the GPU check's Node.js commands share (gpu.mjs, step-bench.mjs): the
// log line, JSON output, the median, the tiny model's shape, and opening and
// releasing a backend.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  Rng,
  deviceName,
  releaseWebGpu,
  useBackend,
  webGpuErrors,
} from '../../packages/core/dist/src/index.js';

export const log = (line) => console.log(`gpu.mjs: ${line}`);
export const writeJson = async (file, value) => {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(value, null, 2) + '\n');
};
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};

/** rows x cols token ids below `vocab`, the same for a seed. */
export function fixedIds(rows, cols, vocab, seed) {
  const rng = new Rng(seed);
  return Array.from({ length: rows }, () =>
    Array.from({ length: cols }, () => Math.floor(rng.uniform() * vocab)),
  );
}

export async function start(backend) {
  await useBackend(backend);
  log(`backend ${backend} on ${deviceName()}`);
}

/** Back to wasm and the GPU released, so that Node.js can exit and errors get reported. */
export async function stop() {
  const errors = [...webGpuErrors()];
  await useBackend('wasm');
  releaseWebGpu();
  return errors;
}

/** The tiny model's shape, shared with reference.py make-tiny. */
export const TINY = {
  vocabSize: 257,
  nPositions: 64,
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
};
