#!/usr/bin/env node
// The README's main job: LoRA fine-tuning of the embedded default model
// (pretrained on the Brown corpus, 1961 American prose) on a different domain:
// nlp-corpus's modern sentences (film reviews, UN minutes, chat, lyrics, ...),
// by two local workers that all-reduce the LoRA gradients (main-job.json).
// Held-out loss before and after (`lorafleet eval`) is printed, and the adapter
// is saved. Extra arguments go to `lorafleet train` (e.g. -- --steps 20).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const data = join(root, 'runs', 'main', 'data');
mkdirSync(data, { recursive: true });
const node = process.execPath;
const run = (args, capture = false) => {
  const result = spawnSync(node, args, {
    cwd: root,
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    encoding: 'utf8',
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
  return result.stdout;
};
const cli = join(root, 'apps/coordinator/bin/lorafleet.js');
const job = JSON.parse(readFileSync(join(root, 'apps/coordinator/main-job.json'), 'utf8'));
const valid = join(data, 'valid.jsonl');
const heldOut = (adapter) => {
  const args = [
    'eval',
    '--model',
    job.model,
    '--data',
    valid,
    '--seq-len',
    String(job['seq-len']),
    '--json',
  ];
  const result = JSON.parse(run([cli, ...args, ...(adapter ? ['--adapter', adapter] : [])], true));
  return `${result.loss.toFixed(4)} (perplexity ${result.perplexity.toFixed(2)}, ${result.tokens} tokens)`;
};

run([
  join(root, 'apps/coordinator/scripts/corpus-text.mjs'),
  'nlp',
  join(data, 'train.jsonl'),
  join(data, 'valid.jsonl'),
  '--limit',
  '6000',
]);
console.log(`held-out loss before: ${heldOut()}`);
run([
  cli,
  'train',
  '--config',
  join(root, 'apps/coordinator/main-job.json'),
  // pnpm passes `pnpm main -- --steps 20` on with the `--`.
  ...process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === '--')),
]);
console.log(`held-out loss after:  ${heldOut(join(root, job.out, 'adapter'))}`);
console.log(
  '\nnext: pnpm lorafleet generate --model packages/models/pretrained/default --adapter runs/main/adapter --prompt "The film"',
);
