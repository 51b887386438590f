// GPT-2's cached inference pass (kv-cache.ts drives it): the blocks of
// Gpt2Model.hidden() over new tokens that attend to the cached keys and
// values first, dropout off. test/generate.test.ts holds the logits to
// model.forward() on each prompt alone.
import { tf } from '@lorafleet/core';
import type { CachedPass, LayerKv } from '../causal-lm.js';
import { type Gpt2Block, type Gpt2Model, geluNew, layerNorm } from './model.js';

/** The last column's hidden state [B, C] (after ln_f) and every layer's extended keys/values. */
export function gpt2Extend(
  model: Gpt2Model,
  pass: CachedPass,
): { last: tf.Tensor2D; layers: LayerKv[] } {
  const c = model.config;
  const [B, T] = pass.ids.shape;
  const mask = pass.bias(null); // [B, 1, T, Tk]
  let x = tf.add(
    model.tokenEmbedding.lookup(pass.ids.flatten()).reshape([B, T, c.nEmbd]),
    tf.gather(model.wpe, pass.positions.flatten()).reshape([B, T, c.nEmbd]),
  ); // [B, T, C]
  const layers: LayerKv[] = [];
  model.blocks.forEach((block, i) => {
    const a = attend(
      block,
      layerNorm(x, block.ln1, c.layerNormEpsilon),
      mask,
      pass.past?.[i],
      c.nHead,
    );
    layers.push(a.kv);
    x = tf.add(x, a.y);
    const hidden = block.cFc.forward(layerNorm(x, block.ln2, c.layerNormEpsilon)); // [B, T, 4C]
    x = tf.add(x, block.mlpProj.forward(geluNew(hidden)));
  });
  const lastX = x.slice([0, T - 1, 0], [B, 1, c.nEmbd]).reshape([B, c.nEmbd]); // [B, C]
  return { last: layerNorm(lastX, model.lnF, c.layerNormEpsilon) as tf.Tensor2D, layers };
}

/** Gpt2Model's attention over cached plus new keys; x [B, T, C] -> [B, T, C]. */
function attend(
  block: Gpt2Block,
  x: tf.Tensor,
  mask: tf.Tensor,
  past: LayerKv | undefined,
  H: number,
): { y: tf.Tensor; kv: LayerKv } {
  const [B, T, C] = x.shape as [number, number, number];
  const D = C / H;
  const qkv = block.cAttn.forward(x); // [B, T, 3C]
  const [q, k, v] = tf
    .split(qkv, 3, 2)
    .map((t) => t.reshape([B, T, H, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D); // [B, H, T, D]
  const keys = past ? tf.concat([past.keys, k!], 2) : k!; // [B, H, Tk, D]
  const values = past ? tf.concat([past.values, v!], 2) : v!; // [B, H, Tk, D]
  const scores = tf.add(tf.mul(tf.matMul(q!, keys, false, true), 1 / Math.sqrt(D)), mask); // [B, H, T, Tk]
  const y = tf.matMul(tf.softmax(scores), values).transpose([0, 2, 1, 3]).reshape([B, T, C]); // [B, T, C]
  return { y: block.attnProj.forward(y), kv: { keys, values } };
}
