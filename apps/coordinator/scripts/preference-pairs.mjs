#!/usr/bin/env node
// Preference pairs for trying `train --objective dpo` without a preference
// dataset: from {"text"} JSONL lines (e.g. the main job's runs/main/data/*.jsonl),
// each sentence's first half is the prompt, its true second half the chosen
// response, and that half with its words in reverse order the rejected one
// (same words, same bytes: only their order tells them apart).
//   node apps/coordinator/scripts/preference-pairs.mjs IN.jsonl OUT.jsonl [--limit N] [--max-chars C]
import { readFileSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(args[i + 1]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`preference-pairs: ${name} takes a positive integer, got ${args[i + 1]}`);
    process.exit(2);
  }
  args.splice(i, 2);
  return value;
};
const limit = flag('--limit', Infinity);
const maxChars = flag('--max-chars', 120);
if (args.length !== 2) {
  console.error(
    'usage: node apps/coordinator/scripts/preference-pairs.mjs IN.jsonl OUT.jsonl [--limit N] [--max-chars C]',
  );
  process.exit(2);
}
const [input, output] = args;
const pairs = [];
for (const line of readFileSync(input, 'utf8').split('\n')) {
  if (pairs.length >= limit) break;
  if (line.trim() === '') continue;
  const text = JSON.parse(line).text;
  if (typeof text !== 'string' || text.length < 30 || text.length > maxChars) continue;
  // Cut at a space near the middle, so the responses are whole words.
  const cut = text.indexOf(' ', Math.floor(text.length / 2));
  if (cut < 0) continue;
  const rest = text.slice(cut + 1);
  const reversed = rest.split(' ').reverse().join(' ');
  if (reversed === rest) continue;
  pairs.push(JSON.stringify({ prompt: text.slice(0, cut + 1), chosen: rest, rejected: reversed }));
}
writeFileSync(output, pairs.join('\n') + '\n');
console.log(`${output}: ${pairs.length} preference pairs from ${input}`);
