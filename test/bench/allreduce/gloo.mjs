// Starts gloo.py once per rank (plain processes, no launcher) and collects rank 0's timings.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** torch's version as `python` sees it, or null when it cannot import torch. */
export function torchVersion(python) {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], {
    encoding: 'utf8',
  });
  return r.status === 0 ? r.stdout.trim() : null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/**
 * Per size, the slowest rank's time of each timed all_reduce: [{ bytes, timesMs }].
 * `onSize` sees each size as it finishes.
 */
export async function runGloo({ python, world, sizes, warmup, repeats, onSize }) {
  const port = await freePort();
  const args = [
    ['--world', world],
    ['--port', port],
    ['--sizes', sizes.join(',')],
    ['--warmup', warmup],
    ['--repeats', repeats],
  ].flat();
  const ranks = Array.from({ length: world }, (_, rank) => {
    const script = join(import.meta.dirname, 'gloo.py');
    const child = spawn(python, [script, '--rank', rank, ...args].map(String), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    const results = [];
    let pending = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      const lines = (pending + d).split('\n');
      pending = lines.pop();
      for (const line of lines.filter(Boolean)) {
        const { bytes, times_ms: timesMs } = JSON.parse(line);
        results.push({ bytes, timesMs });
        onSize?.(bytes, timesMs);
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    return new Promise((resolve, reject) =>
      child.on('exit', (code) =>
        code === 0
          ? resolve(results)
          : reject(new Error(`gloo.py rank ${rank} exited ${code}: ${stderr.slice(-2000)}`)),
      ),
    );
  });
  const [fromRank0] = await Promise.all(ranks);
  return fromRank0;
}
