import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteTokenizer, Gpt2BpeTokenizer } from '../src/tokenizer/index.js';
import { TINY_EOS, TINY_MERGES, tinyMergesTxt, tinyVocab } from './fixtures/tokenizer/tiny-bpe.js';

const FFFD = '\uFFFD';
const ROUND_TRIP = [
  '',
  'hello',
  'Hello, world!\n\n  indented\ttab\r\nCRLF',
  "don't DON'T we'll I'd",
  'naïve café — “quotes” ½ ∑ 北京 Ελληνικά',
  '😀 👩‍👩‍👧 🇫🇷 e\u0301',
  '\u0000\u0007 control \u007f',
  '<|endoftext|>',
  '   leading and trailing   ',
];

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer();

  it('has 256 byte tokens plus EOS', () => {
    expect([tok.kind, tok.vocabSize, tok.eosId]).toEqual(['bytes', 257, 256]);
  });

  it('encodes UTF-8 bytes', () => {
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('hi')).toEqual([104, 105]);
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    expect(tok.encode('😀')).toEqual([0xf0, 0x9f, 0x98, 0x80]);
  });

  it('round-trips text and never emits EOS for "<|endoftext|>"', () => {
    for (const text of ROUND_TRIP) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.encode('<|endoftext|>')).not.toContain(tok.eosId);
  });

  it('renders invalid UTF-8 as U+FFFD instead of throwing', () => {
    expect(tok.decode([0xff])).toBe(FFFD);
    expect(tok.decode([0x68, 0xf0, 0x9f])).toBe(`h${FFFD}`);
    expect(tok.decode(Uint8Array.of(0xe4, 0xb8, 0xad))).toBe('中');
  });

  it('drops EOS, treating it as a boundary a character cannot span', () => {
    expect(tok.decode([104, 256, 105, 256])).toBe('hi');
    expect(tok.decode([0xc3, 256, 0xa9])).toBe(FFFD + FFFD);
  });

  it('renders ids it does not know as U+FFFD', () => {
    expect(tok.decode([104, 300, -1, 1.5])).toBe(`h${FFFD}${FFFD}${FFFD}`);
  });
});

describe('Gpt2BpeTokenizer on a hand-made vocabulary', () => {
  const tok = Gpt2BpeTokenizer.fromVocab(tinyVocab(), TINY_MERGES);

  it('takes EOS from "<|endoftext|>" and sizes the vocabulary by its largest id', () => {
    expect([tok.kind, tok.vocabSize, tok.eosId]).toEqual(['gpt2-bpe', 263, TINY_EOS]);
  });

  it('applies merges by rank', () => {
    expect(tok.encode('low')).toEqual([257]);
    expect(tok.encode('lower')).toEqual([260]);
    // "Ġ low" (rank 2) beats "low er" (rank 4); ignoring ranks would give [32, 260].
    expect(tok.encode(' lower')).toEqual([258, 259]);
    // Both occurrences of the best pair merge before any lower-priority pair.
    expect(tok.encode('lolo')).toEqual([256, 256]);
  });

  it('pre-tokenizes with GPT-2 pattern so merges never cross pieces', () => {
    // "a", "   " (the run minus its last space), " b"; a greedy \s+ would give [97, 261, 261, 98].
    expect(tok.encode('a    b')).toEqual([97, 261, 32, 32, 98]);
    // "lo" and "w" are separate pieces ("w" after a digit is a new letter run).
    expect(tok.encode('lo1w')).toEqual([256, 49, 119]);
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    expect(tok.encode('')).toEqual([]);
  });

  it('returns fresh arrays despite caching pieces', () => {
    tok.encode('low').push(999);
    expect(tok.encode('low low')).toEqual([257, 258]);
  });

  it('round-trips text and decodes EOS as nothing', () => {
    for (const text of ROUND_TRIP) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.encode('<|endoftext|>')).not.toContain(TINY_EOS);
    expect(tok.decode([257, TINY_EOS, 258])).toBe('low low');
    expect(tok.decode([195])).toBe(FFFD);
    expect(tok.decode([257, 5000])).toBe(`low${FFFD}`);
  });

  it('needs an EOS: from the vocabulary or from options', () => {
    const vocab = tinyVocab();
    delete vocab['<|endoftext|>'];
    expect(() => Gpt2BpeTokenizer.fromVocab(vocab, TINY_MERGES)).toThrow(
      /vocab: no "<\|endoftext\|>" token; pass \{ eosId \}/,
    );
    const withEos = Gpt2BpeTokenizer.fromVocab(vocab, TINY_MERGES, { eosId: 300 });
    expect([withEos.eosId, withEos.vocabSize]).toEqual([300, 301]);
  });

  it('rejects vocabularies and merges that do not fit together', () => {
    const noSpace = tinyVocab();
    delete noSpace['Ġ'];
    expect(() => Gpt2BpeTokenizer.fromVocab(noSpace, [])).toThrow(/"Ġ" for byte 0x20/);
    expect(() => Gpt2BpeTokenizer.fromVocab(tinyVocab(), [...TINY_MERGES, ['x', 'yz']])).toThrow(
      /merges\[6\]: merge "x yz" uses "yz", which is not in vocab/,
    );
    expect(() => Gpt2BpeTokenizer.fromVocab({ ...tinyVocab(), dup: 104 }, [])).toThrow(
      /tokens "h" and "dup" share id 104/,
    );
    expect(() => Gpt2BpeTokenizer.fromVocab({ ...tinyVocab(), bad: -1 }, [])).toThrow(
      /token "bad" has id -1/,
    );
  });
});

describe('Gpt2BpeTokenizer.fromFiles', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lorafleet-tokenizer-'));
    await writeFile(join(dir, 'vocab.json'), JSON.stringify(tinyVocab()));
    await writeFile(join(dir, 'merges.txt'), tinyMergesTxt());
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads a Hugging Face vocab.json + merges.txt pair', async () => {
    const tok = await Gpt2BpeTokenizer.fromFiles(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
    expect(tok.encode(' lower')).toEqual([258, 259]);
  });

  it('names the merges.txt line that lacks two parts', async () => {
    const bad = join(dir, 'bad-merges.txt');
    await writeFile(bad, '#version: 0.2\nl o\nlow\n');
    await expect(Gpt2BpeTokenizer.fromFiles(join(dir, 'vocab.json'), bad)).rejects.toThrow(
      `${bad} line 3: expected two tokens separated by one space, got "low"`,
    );
  });

  it('accepts "# #" as a merge on any line but the first, and CRLF endings', async () => {
    const vocab = { ...tinyVocab(), '##': 263 };
    const merges = join(dir, 'hash-merges.txt');
    await writeFile(merges, '#version: 0.2\r\n# #\r\n');
    const vocabPath = join(dir, 'hash-vocab.json');
    await writeFile(vocabPath, JSON.stringify(vocab));
    const tok = await Gpt2BpeTokenizer.fromFiles(vocabPath, merges);
    expect(tok.encode('##')).toEqual([263]);
  });

  it('names a malformed or missing vocab.json', async () => {
    const bad = join(dir, 'bad-vocab.json');
    await writeFile(bad, '{"a": 0,');
    const merges = join(dir, 'merges.txt');
    await expect(Gpt2BpeTokenizer.fromFiles(bad, merges)).rejects.toThrow(`${bad}: not valid JSON`);
    await writeFile(bad, '["a"]');
    await expect(Gpt2BpeTokenizer.fromFiles(bad, merges)).rejects.toThrow(
      `${bad}: expected a JSON object`,
    );
    const missing = join(dir, 'missing.json');
    await expect(Gpt2BpeTokenizer.fromFiles(missing, merges)).rejects.toThrow(missing);
  });
});
