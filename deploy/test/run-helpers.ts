// What the cluster tests share: a tiny model and data made with the real CLI
// (apps/coordinator's test helpers), adapters compared tensor by tensor, and
// waits on a run's files.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export {
  NO_DROPOUT_CONFIG,
  REPO_ROOT,
  ensureBuilt,
  freePort,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  writeJsonl,
} from '../../apps/coordinator/test/helpers.js';
export {
  SWIFTSHADER_NAME,
  driversUsed,
  identicalSwiftShaders,
  requireDeviceLayer,
  testBackends,
} from '../../packages/core/src/testing/index.js';

/** Every run in these tests: a 6-row batch of the numbered pattern, no dropout, so N workers equal one. */
export const TRAIN_FLAGS = [
  ...['--batch-size', '6', '--lora-dropout', '0', '--lr', '1e-2', '--seed', '5', '--seq-len', '32'],
];

/** The F32 tensors of a safetensors file, by name. */
async function tensors(path: string): Promise<Map<string, Float32Array>> {
  const bytes = await readFile(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; data_offsets: [number, number] }
  >;
  const out = new Map<string, Float32Array>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (entry.dtype !== 'F32') throw new Error(`${path}: ${name} is ${entry.dtype}, not F32`);
    const [begin, end] = entry.data_offsets;
    const data = bytes.subarray(8 + headerLength + begin, 8 + headerLength + end);
    out.set(name, new Float32Array(new Uint8Array(data).buffer));
  }
  return out;
}

/** The largest absolute difference between two runs' adapters (throws when their tensors differ in names or sizes). */
export async function adapterDifference(runA: string, runB: string): Promise<number> {
  const file = (run: string) => join(run, 'adapter', 'adapter_model.safetensors');
  const [a, b] = await Promise.all([tensors(file(runA)), tensors(file(runB))]);
  if ([...a.keys()].sort().join() !== [...b.keys()].sort().join()) {
    throw new Error(`the adapters of ${runA} and ${runB} hold different tensors`);
  }
  let max = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    if (x.length !== y.length) throw new Error(`${name}: ${x.length} vs ${y.length} values`);
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

/** Lines of a run's metrics.jsonl so far. */
export async function stepsDone(run: string): Promise<number> {
  const text = await readFile(join(run, 'metrics.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).length;
}

/** Polls `check` every `everyMs` until it returns a value, failing with `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 200,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline)
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
