import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode as gptTokenizerEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GPT2_SPLIT_PATTERN } from '../src/tokenizer/byte-level.js';
import {
  Gpt2BpeTokenizer,
  r50kTokenizer,
  r50kVocabAndMerges,
  type Gpt2VocabAndMerges,
} from '../src/tokenizer/index.js';
import { HANDWRITTEN, randomStrings } from './fixtures/tokenizer/corpus.js';

const FFFD = '\uFFFD';
const SRC_DIR = join(dirname(fileURLToPath(import.meta.url)), '../src/tokenizer');
// The only code points where JavaScript's \s and GPT-2's (Python regex) \s disagree.
const JS_WHITESPACE_QUIRKS = /[\u0085\ufeff]/u;

/** gpt-tokenizer with "<|endoftext|>" as plain text, like our encode. */
const reference = (text: string): number[] =>
  gptTokenizerEncode(text, { disallowedSpecial: new Set() });

// Loaded once per file: deriving 50k merges and building the tokenizer takes ~1 s.
let derived: Gpt2VocabAndMerges;
let fromFiles: Gpt2BpeTokenizer;
let r50k: Gpt2BpeTokenizer;
let corpus: string[];
let tmp = '';

beforeAll(async () => {
  [derived, r50k] = await Promise.all([r50kVocabAndMerges(), r50kTokenizer()]);
  // Through real files too, so parity also covers vocab.json/merges.txt parsing.
  tmp = await mkdtemp(join(tmpdir(), 'lorafleet-r50k-'));
  const mergesTxt = ['#version: 0.2', ...derived.merges.map((m) => m.join(' '))].join('\n');
  await writeFile(join(tmp, 'vocab.json'), JSON.stringify(derived.vocab));
  await writeFile(join(tmp, 'merges.txt'), mergesTxt + '\n');
  fromFiles = await Gpt2BpeTokenizer.fromFiles(join(tmp, 'vocab.json'), join(tmp, 'merges.txt'));
  // Our own source files stand in for a code corpus, whole and line by line.
  const sources = await Promise.all(
    (await readdir(SRC_DIR, { withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => readFile(join(SRC_DIR, entry.name), 'utf8')),
  );
  corpus = [
    ...HANDWRITTEN,
    HANDWRITTEN.join('\n'),
    ...sources,
    ...sources.flatMap((s) => s.split('\n')),
    ...randomStrings(400, 2024),
  ];
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('Gpt2BpeTokenizer against gpt-tokenizer r50k_base', () => {
  it('rebuilds GPT-2 merges.txt: 50000 merges in its known order', () => {
    expect(derived.merges).toHaveLength(50000);
    expect(derived.merges.slice(0, 5)).toEqual([
      ['Ġ', 't'],
      ['Ġ', 'a'],
      ['h', 'e'],
      ['i', 'n'],
      ['r', 'e'],
    ]);
    expect(derived.vocab['Ġthe']).toBe(262);
    expect([fromFiles.vocabSize, fromFiles.eosId]).toEqual([50257, 50256]);
  });

  it('encodes the corpus to exactly the same ids', () => {
    const comparable = corpus.filter((text) => !JS_WHITESPACE_QUIRKS.test(text));
    expect(comparable.length).toBeGreaterThan(700);
    const mismatches = comparable
      .map((text) => ({ text, ours: fromFiles.encode(text), reference: reference(text) }))
      .filter((m) => m.ours.join() !== m.reference.join());
    expect(mismatches.slice(0, 3)).toEqual([]);
  });

  it('round-trips the whole corpus', () => {
    const broken = corpus.filter((text) => fromFiles.decode(fromFiles.encode(text)) !== text);
    expect(broken.slice(0, 3)).toEqual([]);
  });

  it('follows GPT-2, not JavaScript, where their whitespace differs', () => {
    // gpt-tokenizer glues " \u0085" into one punctuation piece; Python's regex
    // (and so GPT-2) sees two whitespace pieces: "Ġ" and the bytes C2 85.
    expect(fromFiles.encode('a \u0085b')).toEqual([64, 220, 126, 227, 65]);
    expect(reference('a \u0085b')).not.toEqual(fromFiles.encode('a \u0085b'));
  });
});

describe('GPT-2 pre-tokenization', () => {
  it('treats exactly the Python regex \\s code points as whitespace', () => {
    // Output of Python's regex module: [c for c in range(0x110000) if regex.match(r'\s', chr(c))].
    // None is above U+FFFF, so the scan stops there to stay fast.
    const python = [
      0x9, 0xa, 0xb, 0xc, 0xd, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
      0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
    ];
    const ours: number[] = [];
    for (let c = 0; c <= 0xffff; c++) {
      // Only whitespace splits "cca" after its first character: letters, digits
      // and punctuation keep their run together.
      const ch = String.fromCharCode(c);
      if (`${ch}${ch}a`.match(GPT2_SPLIT_PATTERN)?.[0] === ch) ours.push(c);
    }
    expect(ours).toEqual(python);
  });

  it('splits like encoder.py', () => {
    // Expected pieces from Python: regex.findall(encoder.py's pattern, text).
    const cases: [string, string[]][] = [
      ["I'm here, aren't you?", ['I', "'m", ' here', ',', ' aren', "'t", ' you', '?']],
      ["DON'T 'Tis", ['DON', "'", 'T', " '", 'Tis']],
      ['a   b\n\n', ['a', '  ', ' b', '\n\n']],
      ['a\u0085 b', ['a', '\u0085', ' b']],
      ['a \u0085b', ['a', ' ', '\u0085', 'b']],
      ['x\ufeff y', ['x', '\ufeff', ' y']],
      ["'\ufeffam", ["'\ufeff", 'am']],
      ['\u00a0 x 12ab', ['\u00a0', ' x', ' 12', 'ab']],
    ];
    for (const [text, pieces] of cases) {
      expect(Array.from(text.matchAll(GPT2_SPLIT_PATTERN), (m) => m[0])).toEqual(pieces);
    }
  });
});

describe('r50kTokenizer', () => {
  it('is GPT-2: 50257 ids, EOS 50256, same ids as vocab.json + merges.txt', () => {
    expect([r50k.kind, r50k.vocabSize, r50k.eosId]).toEqual(['gpt2-bpe', 50257, 50256]);
    expect(r50k.encode('Hello world')).toEqual([15496, 995]);
    const sample = corpus.join('\n');
    expect(r50k.encode(sample)).toEqual(fromFiles.encode(sample));
  });

  it('encodes "<|endoftext|>" in text as plain characters', () => {
    const ids = r50k.encode('a<|endoftext|>b');
    expect(ids).not.toContain(50256);
    expect(r50k.decode(ids)).toBe('a<|endoftext|>b');
  });

  it('decodes a character cut mid-way as U+FFFD without leaking into the next call', () => {
    const [first, second] = r50k.encode('😀') as [number, number];
    // gpt-tokenizer's own decode returns "" for the first half and then "😀"
    // for the second half alone, because its TextDecoder keeps stream state.
    expect(r50k.decode([first])).toBe(FFFD);
    expect(r50k.decode([second])).toBe(FFFD);
    expect(r50k.decode([first, second])).toBe('😀');
  });

  it('drops EOS and renders unknown ids as U+FFFD instead of throwing', () => {
    expect(r50k.decode([15496, 50256, 995])).toBe('Hello world');
    expect(r50k.decode([15496, 60000, -3])).toBe(`Hello${FFFD}${FFFD}`);
  });
});
