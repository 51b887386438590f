#!/usr/bin/env node
// The README's main job: LoRA fine-tuning of the embedded default model
// (pretrained on the Brown corpus, 1961 American prose) on a different domain:
// nlp-corpus's modern sentences (film reviews, UN minutes, chat, lyrics, ...),
// by two local workers that all-reduce the LoRA gradients (main-job.json).
// The workers also evaluate the held-out sentences (before, at step 60,
// after), the dashboard shows the run at http://127.0.0.1:7777/, and the
// adapter is saved. Extra arguments go to `lorafleet train` (e.g. -- --steps 20).
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const data = join(root, 'runs', 'main', 'data');
mkdirSync(data, { recursive: true });
const node = process.execPath;
const run = (args) => {
  const result = spawnSync(node, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
};
const cli = join(root, 'apps/coordinator/bin/lorafleet.js');
const valid = join(data, 'valid.jsonl');

run([
  join(root, 'apps/coordinator/scripts/corpus-text.mjs'),
  'nlp',
  join(data, 'train.jsonl'),
  join(data, 'valid.jsonl'),
  '--limit',
  '6000',
]);
run([
  cli,
  'train',
  '--config',
  join(root, 'apps/coordinator/main-job.json'),
  // Held out: every 10th sentence; the workers evaluate it before, at step 60 and after.
  '--eval-data',
  relative(root, valid), // the cwd is the root
  // The demo always writes runs/main: a second `pnpm main` replaces the first run.
  '--overwrite',

  // pnpm passes `pnpm main -- --steps 20` on with the `--`.
  ...process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === '--')),
]);
console.log(
  '\nnext: pnpm lorafleet generate --model packages/models/pretrained/default --adapter runs/main/adapter --prompt "The film"',
);
