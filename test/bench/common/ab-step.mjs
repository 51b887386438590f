// Shared by the A/B step benchmarks (wasm-attention/step.mjs,
// wasm-step-kernels/step.mjs): their options, and one LoRA forward + backward
// timed under several kernel registrations, alternating step by step in one
// process so that every variant sees the same machine.
import { parseArgs } from 'node:util';

/** --batch and --steps (with --help naming `script`), checked; T is 128 tokens. */
export function stepArgs(script) {
  const { values: opt } = parseArgs({
    options: {
      batch: { type: 'string', default: '8' },
      steps: { type: 'string', default: '6' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (opt.help) {
    console.log(
      `usage: node ${script} [--batch 8] [--steps 6]\n` +
        '  --batch B   rows of 128 tokens per forward + backward (default 8)\n' +
        '  --steps N   timed steps per variant after one warm-up each (default 6)\n' +
        'Needs a build first (pnpm build): it imports packages/*/dist.',
    );
    process.exit(0);
  }
  const B = Number(opt.batch);
  const steps = Number(opt.steps);
  if (!Number.isInteger(B) || B < 1 || !Number.isInteger(steps) || steps < 1) {
    console.error(`--batch and --steps must be integers >= 1, got ${opt.batch} and ${opt.steps}`);
    process.exit(2);
  }
  return { B, steps, T: 128 };
}

/**
 * Median ms and the last loss of `step()` under each variant: `variants` maps a
 * name to a function that installs its kernels; step 0 of each warms up.
 * `restore` runs at the end (the registration the process started with).
 */
export async function alternate(variants, step, steps, restore) {
  const times = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  const losses = {};
  for (let s = 0; s <= steps; s++) {
    for (const [name, install] of Object.entries(variants)) {
      install();
      const t = performance.now();
      losses[name] = await step();
      if (s > 0) times[name].push(performance.now() - t);
    }
  }
  restore();
  const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
  return Object.fromEntries(
    Object.keys(variants).map((name) => [name, { ms: median(times[name]), loss: losses[name] }]),
  );
}

/** Tokens per second of `ms` for a B x T step, as printed. */
export const tokensPerSecond = (B, T, ms) => (((B * T) / ms) * 1000).toFixed(0);
