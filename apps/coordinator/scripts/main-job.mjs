#!/usr/bin/env node
// The README's main job: LoRA fine-tuning of the embedded default model
// (pretrained on the Brown corpus, 1961 American prose) on a different domain:
// nlp-corpus's modern sentences (film reviews, UN minutes, chat, lyrics, ...).
// Held-out loss before and after is printed, and the adapter is saved.
// Extra arguments go to `lorafleet train` (e.g. -- --steps 20 for a quick look).
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const data = join(root, 'runs', 'main', 'data');
mkdirSync(data, { recursive: true });
const node = process.execPath;
const run = (args) => {
  const result = spawnSync(node, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
};

run([
  join(root, 'apps/coordinator/scripts/corpus-text.mjs'),
  'nlp',
  join(data, 'train.jsonl'),
  join(data, 'valid.jsonl'),
  '--limit',
  '6000',
]);
run([
  join(root, 'apps/coordinator/bin/lorafleet.js'),
  'train',
  '--config',
  join(root, 'apps/coordinator/main-job.json'),
  // pnpm passes `pnpm main -- --steps 20` on with the `--`.
  ...process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === '--')),
]);
console.log(
  '\nnext: pnpm lorafleet generate --model packages/models/pretrained/default --adapter runs/main/adapter --prompt "The film"',
);
