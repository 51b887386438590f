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

const byName = (phases, name) =>
  new Map((phases.find((p) => p.name === name)?.rows ?? []).map((r) => [r.bytes, r]));
const PHASES = {
  ring: 'busbw',
  'ring-crc': 'busbw',
  'ring-zmq': 'busbw',
  'zmq-push-pull': 'gbps',
  'zmq-both-ways': 'gbps',
  gloo: 'busbw',
};

/** One run's figures by size: { ring, ringCrc, ringZmq, zmq, zmq2, gloo } in GB/s (undefined when not run). */
function figures(phases, bytes) {
  const [ring, ringCrc, ringZmq, zmq, zmq2, gloo] = Object.entries(PHASES).map(
    ([name, key]) => byName(phases, name).get(bytes)?.[key],
  );
  return { ring, ringCrc, ringZmq, zmq, zmq2, gloo };
}

const f3 = (x) => (x === undefined ? '-' : x.toFixed(3));
const ratio = (a, b) => (a === undefined || b === undefined ? undefined : a / b);
const fx = (x) => (x === undefined ? '-' : `${x.toFixed(2)}x`);

/** "median [min-max]" of the defined values. */
function spread(values, format) {
  const xs = values.filter((x) => x !== undefined);
  if (xs.length === 0) return '-';
  const m = format(median(xs));
  return xs.length === 1 ? m : `${m} [${format(Math.min(...xs))}-${format(Math.max(...xs))}]`;
}

/** One run's table (kept in the JSON). */
export function table(phases, sizes, glooMeasured) {
  return summary([phases], sizes, glooMeasured);
}

/**
 * The markdown table over runs: per size, each phase's median over runs with its range, and
 * the ratios ring/gloo and ring/zeromq (per run, then median and range).
 */
export function summary(runs, sizes, glooMeasured) {
  const glooCol = glooMeasured ? 'gloo busbw' : 'gloo busbw (BENCHMARKS.md, NOT measured here)';
  const lines = [
    `| size | ring busbw | ring+crc busbw | ring-zmq busbw | zeromq.js one-way GB/s | zeromq.js both ways GB/s | ${glooCol} | ring/gloo | ring/zeromq one-way | ring/zeromq both ways | ring+crc/gloo | ring-zmq/gloo |`,
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const bytes of sizes) {
    const per = runs.map((phases) => figures(phases, bytes));
    const pick = (key) => per.map((x) => x[key]);
    const gText = glooMeasured ? spread(pick('gloo'), f3) : (GLOO_REFERENCE[bytes] ?? '-');
    const glooOf = (x) => (glooMeasured ? x.gloo : undefined);
    lines.push(
      `| ${size(bytes)} | ${spread(pick('ring'), f3)} | ${spread(pick('ringCrc'), f3)} | ${spread(pick('ringZmq'), f3)} | ${spread(pick('zmq'), f3)} | ${spread(pick('zmq2'), f3)} | ${gText} | ` +
        `${spread(
          per.map((x) => ratio(x.ring, glooOf(x))),
          fx,
        )} | ${spread(
          per.map((x) => ratio(x.ring, x.zmq)),
          fx,
        )} | ${spread(
          per.map((x) => ratio(x.ring, x.zmq2)),
          fx,
        )} | ${spread(
          per.map((x) => ratio(x.ringCrc, glooOf(x))),
          fx,
        )} | ${spread(
          per.map((x) => ratio(x.ringZmq, glooOf(x))),
          fx,
        )} |`,
    );
  }
  return lines.join('\n');
}
