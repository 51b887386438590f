// Shared by the data tests: a byte tokenizer and files in a fresh temp folder.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import type { ChatFormat, TextTokenizer } from '../src/index.js';

/** One token per UTF-8 byte, EOS = 256. */
export const bytes: TextTokenizer = {
  encode: (text) => Array.from(new TextEncoder().encode(text)),
  eosId: 256,
  vocabSize: 257,
};

/** "role: content\n" per message; the generation prompt is "assistant: ". Refuses a "tool" role. */
export const plainChat: ChatFormat = {
  render(messages, addGenerationPrompt) {
    if (messages.some((m) => m.role === 'tool')) throw new Error('tool messages are not supported');
    return (
      messages.map((m) => `${m.role}: ${m.content}\n`).join('') +
      (addGenerationPrompt ? 'assistant: ' : '')
    );
  },
  encodeRendered: (text) => bytes.encode(text),
  isControlToken: () => false,
  controlTokens: ['<eot>'],
};

/** The byte tokenizer with plainChat as its chat template. */
export const chatBytes: TextTokenizer = { ...bytes, chat: plainChat };

/** Byte ids of `text`, for expected values. */
export const enc = (text: string): number[] => bytes.encode(text);

/** A temp folder for this test file, removed after its tests. */
export function tempFiles(): (name: string, content: string | Uint8Array) => Promise<string> {
  const dir = mkdtemp(join(tmpdir(), 'lorafleet-data-'));
  afterAll(async () => rm(await dir, { recursive: true, force: true }));
  return async (name, content) => {
    const file = join(await dir, name);
    await writeFile(file, content);
    return file;
  };
}
