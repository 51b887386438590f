// streamTokens against plain references: within the context it yields what
// generate() returns (same seed, same sampling); past the context it slides in
// blocks: after each slide the logits are those of a full forward over the
// newest half of the context plus what followed, re-encoded once per block.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tf, useBackend } from '@lorafleet/core';
import {
  type StreamEnd,
  type StreamOptions,
  Gpt2Model,
  generate,
  randomGpt2Weights,
  slideKeep,
  streamTokens,
} from '../src/index.js';
import { tinyGpt2Config } from './fixtures/tiny-gpt2.js';

const CONFIG = tinyGpt2Config();

const GREEDY: StreamOptions = {
  temperature: 0,
  topK: 0,
  topP: 1,
  maxNewTokens: 10,
  seed: 0,
  overflow: 'slide',
};

let model: Gpt2Model;

beforeAll(async () => {
  await useBackend('wasm');
  model = new Gpt2Model(CONFIG, randomGpt2Weights(CONFIG, 3, 0.2));
});

afterAll(() => model.dispose());

async function collect(gen: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const t of gen) out.push(t);
  return out;
}

function lastLogitsArgmax(window: readonly number[]): number {
  const logits = tf.tidy(() => {
    const ids = tf.tensor2d(Int32Array.from(window), [1, window.length], 'int32');
    const V = CONFIG.vocabSize;
    return model
      .forward(ids)
      .slice([0, window.length - 1, 0], [1, 1, V])
      .dataSync();
  });
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** The block-sliding window's greedy tokens, from full forward passes. */
function referenceSliding(prompt: readonly number[], n: number): number[] {
  let window = prompt.slice(-CONFIG.nPositions);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = lastLogitsArgmax(window);
    out.push(next);
    window.push(next);
    if (window.length > CONFIG.nPositions) window = window.slice(-slideKeep(CONFIG.nPositions));
  }
  return out;
}

describe('streamTokens', () => {
  test('within the context: the tokens of generate(), greedy and sampled', async () => {
    const prompt = [5, 9, 200, 31];
    for (const options of [GREEDY, { ...GREEDY, temperature: 0.9, topK: 20, seed: 4 }]) {
      const expected = await generate(model, prompt, { ...options, maxNewTokens: 10 });
      expect(await collect(streamTokens(model, prompt, options))).toEqual(expected);
    }
  });

  test('past the context: slides in blocks, equal to full forwards over the window', async () => {
    const prompt = Array.from({ length: 30 }, (_, i) => (i * 37 + 11) % 256); // longer than 16
    const end: StreamEnd = { reason: 'closed', slides: 0 };
    const tokens = await collect(streamTokens(model, prompt, { ...GREEDY, maxNewTokens: 60 }, end));
    expect(tokens).toEqual(referenceSliding(prompt, 60));
    expect(end.reason).toBe('max-new-tokens');
    // The first token fills the 16-token window; then a slide (keep 8) every 9 tokens.
    expect(end.slides).toBe(Math.floor((60 - 1) / (16 - 8 + 1)) + 1);
    expect(tf.memory().numTensors).toBeLessThan(200);
  });

  test("overflow 'stop' ends when the context is full, saying so", async () => {
    const end: StreamEnd = { reason: 'closed', slides: 0 };
    const tokens = await collect(
      streamTokens(model, [1, 2, 3], { ...GREEDY, maxNewTokens: 100, overflow: 'stop' }, end),
    );
    expect(tokens).toHaveLength(16 - 3 + 1);
    expect(end).toEqual({ reason: 'context-full', slides: 0 });
  });

  test('a consumer that stops early releases every tensor', async () => {
    const before = tf.memory().numTensors;
    const gen = streamTokens(model, [1, 2, 3], { ...GREEDY, maxNewTokens: 50 });
    for await (const _ of gen) break;
    expect(tf.memory().numTensors).toBe(before);
  });
});
