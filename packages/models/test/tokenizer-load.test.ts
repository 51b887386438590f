import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ByteTokenizer,
  Gpt2BpeTokenizer,
  HfTokenizer,
  loadTokenizer,
  saveByteTokenizerConfig,
} from '../src/tokenizer/index.js';
import { TINY_EOS, tinyMergesTxt, tinyVocab } from './fixtures/tokenizer/tiny-bpe.js';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

/** A fresh model folder holding the given files (objects are written as JSON). */
async function modelDir(files: Record<string, string | object>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lorafleet-tokenizer-load-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    await writeFile(
      join(dir, name),
      typeof content === 'string' ? content : JSON.stringify(content),
    );
  }
  return dir;
}

const TINY_FILES = { 'vocab.json': tinyVocab(), 'merges.txt': tinyMergesTxt() };
const GPT2_CONFIG = { model_type: 'gpt2', vocab_size: 50257, n_embd: 768 };

describe('loadTokenizer', () => {
  it('picks ByteTokenizer from what saveByteTokenizerConfig writes', async () => {
    const dir = await modelDir({});
    const path = await saveByteTokenizerConfig(dir, { modelMaxLength: 256 });
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({
      tokenizer_class: 'ByteTokenizer',
      vocab_size: 257,
      eos_token_id: 256,
      model_max_length: 256,
    });
    expect(await loadTokenizer(dir)).toBeInstanceOf(ByteTokenizer);
  });

  it('omits model_max_length when not given', async () => {
    const dir = await modelDir({});
    const written = JSON.parse(await readFile(await saveByteTokenizerConfig(dir), 'utf8'));
    expect(written).not.toHaveProperty('model_max_length');
  });

  it('prefers the byte config over vocab.json, merges.txt and config.json', async () => {
    const dir = await modelDir({
      ...TINY_FILES,
      'config.json': GPT2_CONFIG,
      'tokenizer_config.json': { tokenizer_class: 'ByteTokenizer' },
    });
    expect((await loadTokenizer(dir)).kind).toBe('bytes');
  });

  it('rejects a byte config whose eos_token_id disagrees', async () => {
    const dir = await modelDir({
      'tokenizer_config.json': { tokenizer_class: 'ByteTokenizer', eos_token_id: 0 },
    });
    await expect(loadTokenizer(dir)).rejects.toThrow(
      /tokenizer_config\.json: eos_token_id is 0 but ByteTokenizer's EOS is 256/,
    );
  });

  it('reads vocab.json + merges.txt, whatever tokenizer_config.json names', async () => {
    const dir = await modelDir({
      ...TINY_FILES,
      'config.json': GPT2_CONFIG,
      'tokenizer_config.json': { tokenizer_class: 'GPT2Tokenizer' },
    });
    const tok = await loadTokenizer(dir);
    expect(tok).toBeInstanceOf(Gpt2BpeTokenizer);
    expect(tok.encode(' lower')).toEqual([258, 259]);
  });

  it("prefers tokenizer.json over vocab.json + merges.txt, and chat_template.jinja over the config's template", async () => {
    // The tiny vocabulary as a byte-level BPE tokenizer.json, "lower" merges and all.
    const tokenizerJson = {
      added_tokens: [{ id: TINY_EOS, content: '<|endoftext|>', special: true }],
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
      decoder: { type: 'ByteLevel' },
      model: {
        type: 'BPE',
        vocab: tinyVocab(),
        merges: tinyMergesTxt().split('\n').slice(1).filter(Boolean),
      },
    };
    const dir = await modelDir({
      ...TINY_FILES,
      'tokenizer.json': tokenizerJson,
      'tokenizer_config.json': { chat_template: 'from the config' },
      'chat_template.jinja': '{{ messages[0].content }} from the .jinja file',
    });
    const tok = await loadTokenizer(dir);
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect([tok.kind, tok.eosId]).toEqual(['tokenizer-json', TINY_EOS]);
    expect(tok.encode(' lower')).toEqual([258, 259]);
    expect(tok.chat?.render([{ role: 'user', content: 'hi' }], false)).toBe(
      'hi from the .jinja file',
    );
  });

  it('refuses half a vocab.json + merges.txt pair rather than guessing', async () => {
    const dir = await modelDir({ 'vocab.json': tinyVocab(), 'config.json': GPT2_CONFIG });
    await expect(loadTokenizer(dir)).rejects.toThrow(
      `${dir}: found ${join(dir, 'vocab.json')} but not ${join(dir, 'merges.txt')}`,
    );
  });

  it('falls back to r50k for a GPT-2 config without tokenizer files', async () => {
    const dir = await modelDir({ 'config.json': GPT2_CONFIG });
    const tok = await loadTokenizer(dir);
    expect([tok.kind, tok.vocabSize, tok.eosId]).toEqual(['gpt2-bpe', 50257, 50256]);
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
  });

  it('explains what it looked for and how to fix it', async () => {
    const dir = await modelDir({ 'config.json': { model_type: 'gpt2', vocab_size: 50304 } });
    const error = await loadTokenizer(dir).catch((err: Error) => err);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain(`cannot choose a tokenizer for ${dir}`);
    expect(message).toContain('config.json has model_type "gpt2", vocab_size 50304');
    expect(message).toContain('no tokenizer_config.json');
    expect(message).toContain('saveByteTokenizerConfig(dir)');
  });

  it('reports an empty folder', async () => {
    const dir = await modelDir({});
    await expect(loadTokenizer(dir)).rejects.toThrow(
      /found no tokenizer_config\.json, no tokenizer\.json, vocab\.json or merges\.txt, no config\.json/,
    );
  });

  it('names a config file that is not JSON', async () => {
    const dir = await modelDir({ 'config.json': '{ model_type: gpt2 }' });
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'config.json')}: not valid JSON`);
    const dir2 = await modelDir({ 'tokenizer_config.json': '[]' });
    await expect(loadTokenizer(dir2)).rejects.toThrow(
      `${join(dir2, 'tokenizer_config.json')}: expected a JSON object`,
    );
  });
});
