// LoRA+ (Hayou, Ghosh and Yu 2024, arXiv 2402.12354): B learns faster than A.
// As PEFT's create_loraplus_optimizer groups the trained parameters: every
// lora_B and every 1-D parameter (biases, norm weights, DoRA's magnitudes) at
// lr * ratio, everything else (lora_A, an embedding's lora_embedding_A and
// lora_embedding_B, whole matrices of modules_to_save) at lr. (PEFT also
// declares an embedding group with its own rate, loraplus_lr_embedding, but
// looks its members up by module type on parameters, so it stays empty.)
import type { ParameterSlot } from '../lora/params.js';

/** Whether a parameter learns at lr * ratio under LoRA+. */
export function loraplusFast(slot: Pick<ParameterSlot, 'name' | 'variable'>): boolean {
  return slot.name.includes('lora_B') || slot.variable.rank === 1;
}

/**
 * The factor of the step's learning rate for each element of the fused
 * parameters (TrainableParameters' order), or null when every factor is 1.
 */
export function loraplusLrScales(
  params: { readonly slots: readonly ParameterSlot[]; readonly size: number },
  ratio: number,
): Float64Array | null {
  if (!(ratio > 0 && Number.isFinite(ratio)))
    throw new Error(`the LoRA+ learning-rate ratio must be a finite number > 0, got ${ratio}`);
  if (ratio === 1) return null;
  const scales = new Float64Array(params.size).fill(1);
  for (const slot of params.slots) {
    if (loraplusFast(slot)) scales.fill(ratio, slot.offset, slot.offset + slot.size);
  }
  return scales;
}
