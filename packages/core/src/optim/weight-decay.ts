// Which trained parameters take AdamW's weight decay, as transformers'
// Trainer decides (Trainer.get_decay_parameter_names, which PEFT's
// create_loraplus_optimizer uses too): none whose lower-cased name contains
// "bias", "layernorm" or "rmsnorm" or matches "(^|.)norm($|.)" or
// "_norm($|.)", and none of an nn.LayerNorm module (GPT-2's ln_1, ln_2 and
// ln_f here, by name). LoRA's A and B, DoRA's magnitudes, embeddings and
// the heads of modules_to_save decay; biases and norm weights do not.
import type { ParameterSlot } from '../lora/params.js';

const NO_DECAY = [
  /bias/,
  /layernorm/,
  /rmsnorm/,
  /(?:^|\.)norm(?:$|\.)/,
  /_norm(?:$|\.)/,
  /(?:^|\.)ln_(?:\d+|f)(?:$|\.)/, // GPT-2's nn.LayerNorm modules
];

/** Whether the trained parameter `name` (a Hugging Face or PEFT name) takes weight decay. */
export function takesWeightDecay(name: string): boolean {
  const lower = name.toLowerCase();
  return !NO_DECAY.some((pattern) => pattern.test(lower));
}

/**
 * The factor (1 or 0) of the weight decay for each element of the fused
 * parameters (TrainableParameters' order), or null when every one decays.
 */
export function weightDecayScales(params: {
  readonly slots: readonly ParameterSlot[];
  readonly size: number;
}): Float64Array | null {
  const exempt = params.slots.filter((slot) => !takesWeightDecay(slot.name));
  if (exempt.length === 0) return null;
  const scales = new Float64Array(params.size).fill(1);
  for (const slot of exempt) scales.fill(0, slot.offset, slot.offset + slot.size);
  return scales;
}
