// A PiSSA (or OLoRA) adapter only works on top of the residual base
// W - s B0 A0 that its initialisation wrote. To ship it for the ORIGINAL base, fold the initial
// factors in (as PEFT's path_initial_model_for_weight_conversion does):
//   A' = [A; A0] (2r x in),  B' = [B, -B0] (out x 2r),  s' = s
// so W + s' B' A' = W + s (B A - B0 A0) = W_res + s B A.
import type { LoraModuleWeights, PeftAdapter } from '../io/peft.js';

export interface InitialFactors {
  a: Float32Array; // [r, in]
  b: Float32Array; // [out, r]
}

/** The same adapter as a plain LoRA of rank 2r for the original base weights. */
export function pissaToLora(
  adapter: PeftAdapter,
  initial: ReadonlyMap<string, InitialFactors>,
): PeftAdapter {
  const { config } = adapter;
  if (config.rankPattern || config.alphaPattern) {
    throw new Error('PiSSA conversion does not support rank_pattern or alpha_pattern');
  }
  const modules = new Map<string, LoraModuleWeights>();
  for (const [path, w] of adapter.modules) {
    const start = initial.get(path);
    if (!start) throw new Error(`PiSSA conversion: no initial factors for ${path}`);
    if (start.a.length !== w.a.length || start.b.length !== w.b.length) {
      throw new Error(`PiSSA conversion: ${path}'s initial factors do not match its shape`);
    }
    const { r, inFeatures: n, outFeatures: m } = w;
    const a = new Float32Array(2 * r * n);
    a.set(w.a, 0);
    a.set(start.a, r * n);
    const b = new Float32Array(m * 2 * r);
    for (let i = 0; i < m; i++) {
      for (let k = 0; k < r; k++) {
        b[i * 2 * r + k] = w.b[i * r + k]!;
        b[i * 2 * r + r + k] = -start.b[i * r + k]!;
      }
    }
    modules.set(path, { a, b, r: 2 * r, inFeatures: n, outFeatures: m });
  }
  // Keep the scaling: alpha / r -> 2 alpha / 2r; rsLoRA alpha / sqrt(r) -> sqrt(2) alpha / sqrt(2r).
  const loraAlpha = config.useRslora ? Math.SQRT2 * config.loraAlpha : 2 * config.loraAlpha;
  return {
    ...adapter,
    config: { ...config, r: 2 * config.r, loraAlpha, initLoraWeights: true },
    modules,
  };
}
