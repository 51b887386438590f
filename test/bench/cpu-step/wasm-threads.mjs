// tfjs-backend-wasm's multithreaded build under Node, for measuring only.
// tfjs 4.22 turns threads off under Node (flags_wasm.js, tfjs issue #3830):
// Emscripten's pthread workers are handed blob: URLs, which Node's
// worker_threads cannot load. This writes the worker script to a file, makes
// the main thread's URL.createObjectURL answer with file paths, forces the
// flag, and sets the thread count; call it before the wasm backend starts.
// tfjs-wasm also caps its pool at half the logical cores (it assumes two
// hyperthreads per core: 1 thread on a 2-vCPU machine), so os.cpus() is
// stretched to 2 x threads for it.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os, { tmpdir } from 'node:os';
import { URL } from 'node:url';
import { dirname, join } from 'node:path';

export function enableWasmThreads(tf, root, threads) {
  const require = createRequire(join(root, 'packages/core/package.json'));
  const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  const mainScript = join(wasmDir, 'wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require(
    join(wasmDir, 'wasm-out/tfjs-backend-wasm-threaded-simd.worker.js'),
  );
  const workerScript = join(tmpdir(), `lorafleet-wasm-pthread-${process.pid}.cjs`);
  // Inside each worker the main script arrives as a Blob too: answer with its path.
  writeFileSync(
    workerScript,
    `URL.createObjectURL = () => ${JSON.stringify(mainScript)}; URL.revokeObjectURL = () => {};\n` +
      // As tfjs does for its Blob: the string's newlines sit inside JS string literals.
      wasmWorkerContents.replace(/\n/g, '\\n'),
  );
  const original = URL.createObjectURL;
  URL.createObjectURL = (blob) =>
    blob?.type === 'application/javascript'
      ? workerScript
      : blob?.type === 'text/javascript'
        ? mainScript
        : original(blob);
  const cpus = os.cpus();
  os.cpus = () => Array.from({ length: 2 * threads }, (_, i) => cpus[i % cpus.length]);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  require('@tensorflow/tfjs-backend-wasm').setThreadsCount(threads);
}
