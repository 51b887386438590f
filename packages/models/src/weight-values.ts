// What every family's model does the same way with its weights: read their
// current values by Hugging Face name, and count them from their shapes.
import type { tf } from '@lorafleet/core';
import type { WeightMap } from './causal-lm.js';

/** The tensors' current values (merged adapters included), by name. */
export async function readNamedWeights(named: [string, tf.Tensor][]): Promise<WeightMap> {
  const out: WeightMap = new Map();
  // One tensor at a time (await data(): GPU backends allow no other read under Node.js).
  for (const [name, v] of named) {
    out.set(name, { shape: [...v.shape], data: (await v.data()) as Float32Array });
  }
  return out;
}

/** Elements in all of `shapes`: from the config, so that a base stored in half precision counts too. */
export function countElements(shapes: Iterable<number[]>): number {
  let n = 0;
  for (const shape of shapes) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
