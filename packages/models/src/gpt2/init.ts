// Random GPT-2 weights as transformers initialises them (GPT2PreTrainedModel._init_weights):
// N(0, 0.02) for embeddings and linear weights, N(0, 0.02 / sqrt(2 n_layer))
// for the residual projections (c_proj), zero biases, unit LayerNorm gains.
import { Rng } from '@lorafleet/core';
import type { Gpt2Config } from './config.js';
import { gpt2WeightShapes, type WeightMap } from './model.js';

export function randomGpt2Weights(config: Gpt2Config, seed: number, std = 0.02): WeightMap {
  const rng = new Rng(seed);
  const weights: WeightMap = new Map();
  for (const [name, shape] of gpt2WeightShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    if (/ln_(1|2|f)\.weight$/.test(name)) data.fill(1);
    else if (!name.endsWith('.bias')) {
      const scale = name.endsWith('c_proj.weight') ? std / Math.sqrt(2 * config.nLayer) : std;
      for (let i = 0; i < size; i++) data[i] = rng.normal() * scale;
    }
    weights.set(name, { shape, data });
  }
  return weights;
}
