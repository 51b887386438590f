/** How one LoRA adapter is shaped and scaled; PEFT's LoraConfig fields, typed. */
export interface LoraSettings {
  /** Rank of the update B A. */
  r: number;
  /** Scale numerator: the update is multiplied by alpha / r (or alpha / sqrt(r) with rsLoRA). */
  alpha: number;
  /** Dropout on the LoRA path's input during training (0 disables it). */
  dropout: number;
  /** rsLoRA (Kalajdzievski 2023): alpha / sqrt(r) keeps the update's scale stable as r grows. */
  rslora: boolean;
  /**
   * DoRA (Liu et al. 2024, arXiv 2402.09353; PEFT's use_dora): the adapted
   * weight is m (W + s B A) / ||W + s B A||, its rows rescaled to a trained
   * magnitude m [out]. Linear layers only.
   */
  useDora?: boolean;
}

export const DEFAULT_LORA: LoraSettings = { r: 8, alpha: 16, dropout: 0, rslora: false };

export function loraScaling(s: Pick<LoraSettings, 'r' | 'alpha' | 'rslora'>): number {
  return s.rslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
}

/** Checks settings and says which field is wrong and what is allowed. */
export function validateLoraSettings(s: LoraSettings, where = 'LoRA settings'): void {
  if (!Number.isInteger(s.r) || s.r < 1) {
    throw new Error(`${where}: r must be a positive integer, got ${s.r}`);
  }
  if (!Number.isFinite(s.alpha) || s.alpha <= 0) {
    throw new Error(`${where}: alpha must be a positive number, got ${s.alpha}`);
  }
  if (!(s.dropout >= 0 && s.dropout < 1)) {
    throw new Error(`${where}: dropout must be in [0, 1), got ${s.dropout}`);
  }
}
