// What one pass over a Llama-family model's layers reads besides the hidden
// states (rotary tables, the attention bias, training switches), and how a
// checkpointed layer gets its tensors back in backward.
import type { tf } from '@lorafleet/core';
import type { LayerKv } from '../causal-lm.js';
import type { DocumentLayout } from '../packed-documents.js';

/** cos and sin [B|1, 1, T, D] of the rotary embedding. */
export interface Rotary {
  cos: tf.Tensor4D;
  sin: tf.Tensor4D;
}

/** What one pass over the layers needs besides the hidden states. */
export interface LayerPass {
  rotary: Rotary;
  /** Gemma 3's sliding-window layers' own rotation; null: as the others. */
  localRotary: Rotary | null;
  bias: (window: number | null) => tf.Tensor4D; // [B|1, 1, T, Tk]
  /** bias is exactly the causal mask, windowed by sliding_window (no cache, no padding): fused attention may run. */
  causal?: boolean;
  /** Packed documents (ForwardPassOptions.positionIds): each attends within itself (packed-documents.ts); bias unused. */
  documents?: DocumentLayout;
  past: readonly LayerKv[] | null;
  training: boolean;
  /** While training: false draws no dropout mask (ForwardPassOptions.dropout). */
  dropout?: boolean;
  seed: number;
  /** NEFTune's alpha while training (neftune.ts); absent or 0: no noise. */
  neftuneAlpha?: number;
  /** While training: each layer recomputed in backward (ForwardPassOptions.gradientCheckpointing). */
  gradientCheckpointing?: boolean;
}

/** Whether the pass draws dropout masks: training, and dropout not turned off. */
export const dropping = (pass: LayerPass): boolean => pass.training && pass.dropout !== false;

/** The rotary tables' tensors of a pass, in the order withRotaryTensors reads them. */
export function rotaryTensors(pass: LayerPass): tf.Tensor4D[] {
  const local = pass.localRotary ? [pass.localRotary.cos, pass.localRotary.sin] : [];
  return [pass.rotary.cos, pass.rotary.sin, ...local];
}

/** `pass` reading its rotary tables from `tables` (rotaryTensors' order): kept copies in backward. */
export function withRotaryTensors(pass: LayerPass, tables: readonly tf.Tensor[]): LayerPass {
  const [cos, sin, localCos, localSin] = tables as tf.Tensor4D[];
  const localRotary = localCos && localSin ? { cos: localCos, sin: localSin } : null;
  return { ...pass, rotary: { cos: cos!, sin: sin! }, localRotary };
}
