// Units, statistics and the results table of the all-reduce benchmark.
export const KiB = 1024;
export const MiB = 1024 * KiB;

/** gloo busbw from shared/BENCHMARKS.md, shown only when torch is missing here. */
const GLOO_REFERENCE = {
  [64 * KiB]: '0.10',
  [MiB]: '0.28-0.80',
  [4 * MiB]: '0.79-0.84',
  [16 * MiB]: '0.91-0.99',
  [64 * MiB]: '0.97-1.06',
};

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** GB/s (1e9 bytes per second) of `bytes` moved in `ms`. */
export const gb = (bytes, ms) => bytes / (ms * 1e-3) / 1e9;

export const size = (b) => (b >= MiB ? `${b / MiB} MiB` : b >= KiB ? `${b / KiB} KiB` : `${b} B`);

/** One collective's row: median time, algbw and NCCL's busbw = algbw x 2(n-1)/n. */
export function collectiveRow(bytes, timesMs, world) {
  const ms = median(timesMs);
  const algbw = gb(bytes, ms);
  return { bytes, medianMs: ms, algbw, busbw: (algbw * 2 * (world - 1)) / world, timesMs };
}

/** The markdown table: one line per size, every phase side by side, with the ratios. */
export function table(phases, sizes, glooMeasured) {
  const by = (name) =>
    new Map((phases.find((p) => p.name === name)?.rows ?? []).map((r) => [r.bytes, r]));
  const [on, off, zmq, gloo] = [
    'ring-checksum-on',
    'ring-checksum-off',
    'zmq-push-pull',
    'gloo',
  ].map(by);
  const f = (x) => (x === undefined ? '-' : x.toFixed(3));
  const ratio = (a, b) => (a === undefined || b === undefined ? '-' : `${(a / b).toFixed(2)}x`);
  const glooCol = glooMeasured ? 'gloo busbw' : 'gloo busbw (BENCHMARKS.md, NOT measured here)';
  const lines = [
    `| size | ring busbw, checksum on | ring busbw, checksum off | zeromq.js one-way GB/s | ${glooCol} | ring/gloo on | ring/gloo off | ring/zeromq on | ring/zeromq off |`,
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const bytes of sizes) {
    const [a, b, z] = [on.get(bytes)?.busbw, off.get(bytes)?.busbw, zmq.get(bytes)?.gbps];
    const g = glooMeasured ? gloo.get(bytes)?.busbw : undefined;
    const gText = glooMeasured ? f(g) : (GLOO_REFERENCE[bytes] ?? '-');
    lines.push(
      `| ${size(bytes)} | ${f(a)} | ${f(b)} | ${f(z)} | ${gText} | ${ratio(a, g)} | ${ratio(b, g)} | ${ratio(a, z)} | ${ratio(b, z)} |`,
    );
  }
  return lines.join('\n');
}
