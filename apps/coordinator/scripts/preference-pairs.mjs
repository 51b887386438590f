#!/usr/bin/env node
// Preference pairs for trying `train --objective dpo` without a preference
// dataset: from {"text"} JSONL lines (e.g. the main job's runs/main/data/*.jsonl),
// each sentence's first half is the prompt, its true second half the chosen
// response, and that half with its words in reverse order the rejected one
// (same words, same bytes: only their order tells them apart). With
// --unpaired, KTO's unpaired feedback instead: each pair as two lines,
// {"prompt", "completion": the true half, "label": true} and the reversed
// half with "label": false (TRL's unpair_preference_dataset).
//   node apps/coordinator/scripts/preference-pairs.mjs IN.jsonl OUT.jsonl [--limit N] [--max-chars C] [--unpaired]
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

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
const unpaired = args.includes('--unpaired');
if (unpaired) args.splice(args.indexOf('--unpaired'), 1);
const limit = flag('--limit', Infinity);
const maxChars = flag('--max-chars', 120);
if (args.length !== 2) {
  console.error(
    'usage: node apps/coordinator/scripts/preference-pairs.mjs IN.jsonl OUT.jsonl [--limit N] [--max-chars C] [--unpaired]',
  );
  process.exit(2);
}
const [input, output] = args;
if (!existsSync(input)) {
  console.error(
    `preference-pairs: ${input}: no such file (the main job's data appears after \`pnpm main\`)`,
  );
  process.exit(1);
}
const pairs = [];
for (const [i, line] of readFileSync(input, 'utf8').split('\n').entries()) {
  if (pairs.length >= limit) break;
  if (line.trim() === '') continue;
  let text;
  try {
    text = JSON.parse(line).text;
  } catch (error) {
    console.error(`preference-pairs: ${input}:${i + 1}: not JSON (${error.message})`);
    process.exit(1);
  }
  if (typeof text !== 'string' || text.length < 30 || text.length > maxChars) continue;
  // Cut at a space near the middle, so the responses are whole words.
  const cut = text.indexOf(' ', Math.floor(text.length / 2));
  if (cut < 0) continue;
  const rest = text.slice(cut + 1);
  const reversed = rest.split(' ').reverse().join(' ');
  if (reversed === rest) continue;
  const prompt = text.slice(0, cut + 1);
  pairs.push(
    unpaired
      ? [
          JSON.stringify({ prompt, completion: rest, label: true }),
          JSON.stringify({ prompt, completion: reversed, label: false }),
        ].join('\n')
      : JSON.stringify({ prompt, chosen: rest, rejected: reversed }),
  );
}
mkdirSync(dirname(output), { recursive: true });
writeFileSync(output, pairs.join('\n') + '\n');
console.log(
  `${output}: ${pairs.length} preference pairs${unpaired ? ', as two unpaired examples each,' : ''} from ${input}`,
);
