// Gemma 3's multimodal weights. The decoder's tensors are stored as
// transformers v5 saves them (language_model.model.*, language_model.lm_head)
// or as 4.5x did (model.language_model.*, lm_head) and are named by their
// module path (model.language_model.layers.N...) in the model. The vision
// tower's and the projector's are never computed: copied from the folder the
// model came from, or made at random with a new model.
import { Rng } from '@lorafleet/core';
import type { WeightMap } from '../causal-lm.js';
import type { Gemma3Config } from './config.js';

const TOWER = /^(?:model\.)?((?:vision_tower|multi_modal_projector)\..+)$/;

/** A stored tensor's module-path name; null: the vision tower's or the projector's. */
export function gemma3ModelName(stored: string): string | null {
  if (TOWER.test(stored)) return null;
  if (stored === 'language_model.lm_head.weight') return 'lm_head.weight';
  if (stored.startsWith('language_model.model.'))
    return `model.language_model.${stored.slice('language_model.model.'.length)}`;
  return stored;
}

/** The name transformers v5's save_pretrained stores a tensor under. */
export function gemma3StoredName(name: string): string {
  const tower = TOWER.exec(name);
  if (tower) return tower[1]!;
  if (name === 'lm_head.weight') return 'language_model.lm_head.weight';
  if (name.startsWith('model.language_model.'))
    return `language_model.model.${name.slice('model.language_model.'.length)}`;
  return name;
}

const positive = (v: unknown, fallback: number) =>
  Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : fallback;

/**
 * The SigLIP vision tower's and the projector's tensors as transformers v5
 * saves them, from vision_config (SiglipVisionConfig's defaults where it is
 * silent): what a new random model needs.
 */
export function gemma3TowerShapes(c: Gemma3Config): Map<string, number[]> {
  const v = (c.wrapper.vision_config ?? {}) as Record<string, unknown>;
  const h = positive(v.hidden_size, 768);
  const f = positive(v.intermediate_size, 3072);
  const [patch, image] = [positive(v.patch_size, 16), positive(v.image_size, 224)];
  const shapes = new Map<string, number[]>();
  const linear = (name: string, out: number, inF: number) =>
    shapes.set(`${name}.weight`, [out, inF]).set(`${name}.bias`, [out]);
  const norm = (name: string) => shapes.set(`${name}.weight`, [h]).set(`${name}.bias`, [h]);
  const mlp = (p: string) => {
    linear(`${p}.mlp.fc1`, f, h);
    linear(`${p}.mlp.fc2`, h, f);
  };
  const t = 'vision_tower';
  shapes.set(`${t}.embeddings.patch_embedding.weight`, [
    h,
    positive(v.num_channels, 3),
    patch,
    patch,
  ]);
  shapes.set(`${t}.embeddings.patch_embedding.bias`, [h]);
  shapes.set(`${t}.embeddings.position_embedding.weight`, [(image / patch) ** 2, h]);
  for (let i = 0; i < positive(v.num_hidden_layers, 12); i++) {
    const p = `${t}.encoder.layers.${i}`;
    norm(`${p}.layer_norm1`);
    for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj'])
      linear(`${p}.self_attn.${proj}`, h, h);
    norm(`${p}.layer_norm2`);
    mlp(p);
  }
  norm(`${t}.post_layernorm`);
  if (v.vision_use_head !== false) {
    shapes.set(`${t}.head.probe`, [1, 1, h]);
    shapes.set(`${t}.head.attention.in_proj_weight`, [3 * h, h]);
    shapes.set(`${t}.head.attention.in_proj_bias`, [3 * h]);
    linear(`${t}.head.attention.out_proj`, h, h);
    norm(`${t}.head.layernorm`);
    mlp(`${t}.head`);
  }
  shapes.set('multi_modal_projector.mm_input_projection_weight', [h, c.hiddenSize]);
  shapes.set('multi_modal_projector.mm_soft_emb_norm.weight', [h]);
  return shapes;
}

/** Random tower weights: N(0, 0.02) matrices, unit norm gains, zero biases. */
export function randomGemma3Tower(c: Gemma3Config, seed: number): WeightMap {
  const rng = new Rng(seed);
  const weights: WeightMap = new Map();
  for (const [name, shape] of gemma3TowerShapes(c)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/norm\d?\.weight$|layernorm\.weight$/.test(name))
      data.fill(name.includes('mm_soft') ? 0 : 1);
    else if (!name.endsWith('bias'))
      for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 0.02;
    weights.set(name, { shape, data });
  }
  return weights;
}
