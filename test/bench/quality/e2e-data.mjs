// @ts-check
// E2E NLG data for the quality benchmark: the CSVs grouped by meaning
// representation (MR), a seeded train/validation split of devset.csv's MR
// groups (no MR in both), the prompt each MR becomes, and the JSONL files
// {"prompt", "completion"} that `lorafleet train|eval` read.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readReferenceGroups, splitIds } from '../../../packages/data/dist/src/index.js';

/** @typedef {import('../../../packages/data/dist/src/index.js').ReferenceGroup} ReferenceGroup */

/**
 * 'compact' (default): `name=Alimentum; area=city centre; family=no` + "\n".
 * 'mr': the MR as written, `name[Alimentum], area[city centre], familyFriendly[no]` + "\n".
 * The default model reads UTF-8 bytes with a 256-token context, and an E2E
 * MR plus one reference is ~250-280 bytes: the compact form saves ~25 bytes
 * of prompt, so fewer examples are truncated and generations have room to
 * finish.
 * @typedef {'compact' | 'mr'} PromptFormat
 */

/** @type {readonly PromptFormat[]} */
export const PROMPT_FORMATS = ['compact', 'mr'];

/** @type {Readonly<Record<string, string>>} */
const SHORT_KEYS = {
  eatType: 'type',
  priceRange: 'price',
  'customer rating': 'rating',
  familyFriendly: 'family',
};

const SLOT = /\s*([^[\],]+)\[([^\]]*)\]\s*(?:,|$)/g;

/**
 * The prompt of one MR, ending in a newline (generation stops at the next one).
 * @param {string} mr
 * @param {PromptFormat} format
 * @returns {string}
 */
export function renderPrompt(mr, format) {
  if (format === 'mr') return `${mr}\n`;
  const slots = [...mr.matchAll(SLOT)];
  if (slots.map((m) => m[0]).join('') !== mr || slots.length === 0)
    throw new Error(`E2E: cannot read the MR ${JSON.stringify(mr)} as key[value], ...`);
  const pairs = slots.map(([, key = '', value = '']) => `${SHORT_KEYS[key] ?? key}=${value}`);
  return `${pairs.join('; ')}\n`;
}

/**
 * @typedef {object} E2eSplit
 * @property {ReferenceGroup[]} train devset.csv MR groups for training.
 * @property {ReferenceGroup[]} validation devset.csv MR groups held out (none in train).
 * @property {ReferenceGroup[]} test testset_w_refs.csv MR groups, in file order.
 */

/**
 * @param {string} dir holds devset.csv and testset_w_refs.csv
 * @param {{ seed: number, validationFraction: number }} options
 * @returns {Promise<E2eSplit>}
 */
export async function readE2e(dir, options) {
  const columns = { promptColumn: 'mr', referenceColumn: 'ref' };
  const dev = await readReferenceGroups(join(dir, 'devset.csv'), columns);
  const test = await readReferenceGroups(join(dir, 'testset_w_refs.csv'), columns);
  const { train, validation } = splitIds(dev.length, {
    seed: options.seed,
    validationFraction: options.validationFraction,
  });
  const pick = (/** @type {number[]} */ ids) =>
    ids.map((i) => /** @type {ReferenceGroup} */ (dev[i]));
  return { train: pick(train), validation: pick(validation), test };
}

/**
 * One {"prompt", "completion"} line per (MR, reference) pair; `limit` keeps
 * only the first pairs.
 * @param {readonly ReferenceGroup[]} groups
 * @param {PromptFormat} format
 * @param {number} [limit]
 * @returns {{ prompt: string, completion: string }[]}
 */
export function examplesOf(groups, format, limit = Infinity) {
  const pairs = groups.flatMap((g) =>
    g.references.map((completion) => ({ prompt: renderPrompt(g.prompt, format), completion })),
  );
  return pairs.slice(0, limit);
}

/**
 * @param {string} file
 * @param {readonly { prompt: string, completion: string }[]} examples
 */
export async function writeJsonl(file, examples) {
  await writeFile(file, examples.map((e) => JSON.stringify(e) + '\n').join(''));
}
