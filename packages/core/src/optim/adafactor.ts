// transformers' Adafactor (Shazeer & Stern 2018, arXiv 1804.04235) as its
// Trainer runs `adafactor`: scale_parameter and relative_step off, so the
// step size is the schedule's lr; eps (1e-30, 1e-3), clip_threshold 1,
// decay_rate -0.8, no first moment (beta1 None), weight decay as its own
// (p -= lr * wd * p). Per tensor of shape [..., R, C], t the step:
//   beta2t = 1 - t^decay_rate;  G = g^2 + eps1
//   row = beta2t * row + (1 - beta2t) * mean over C of G      [..., R]
//   col = beta2t * col + (1 - beta2t) * mean over R of G      [..., C]
//   u = g * rsqrt(row / mean(row)) * rsqrt(col)
// (a 1-D tensor keeps exp_avg_sq = beta2t * exp_avg_sq + (1 - beta2t) G,
// u = g * rsqrt(exp_avg_sq)); then
//   u *= lr / max(1, rms(u) / clip_threshold)
//   beta1: exp_avg = beta1 * exp_avg + (1 - beta1) u;  u = exp_avg
//   p -= lr * wd * p;  p -= u
import type { OptimizerRule, OptimizerState, SlotLayout } from './rule.js';

export interface AdafactorOptions {
  lr: number;
  /** Added to g^2 (eps[0] in transformers). */
  eps1: number;
  clipThreshold: number;
  decayRate: number;
  /** The first moment's decay; null: none (transformers' default). */
  beta1: number | null;
  weightDecay: number;
}

/** What transformers' Trainer gives its Adafactor (lr aside). */
export const ADAFACTOR_DEFAULTS: Omit<AdafactorOptions, 'lr'> = {
  eps1: 1e-30,
  clipThreshold: 1,
  decayRate: -0.8,
  beta1: null,
  weightDecay: 0,
};

const factored = (shape: readonly number[]) => shape.length >= 2;

export const ADAFACTOR: OptimizerRule<AdafactorOptions> = {
  title: 'Adafactor',
  stateShapes: (o, shape) => ({
    exp_avg: o.beta1 !== null ? shape : null,
    exp_avg_sq_row: factored(shape) ? shape.slice(0, -1) : null,
    exp_avg_sq_col: factored(shape) ? [...shape.slice(0, -2), shape.at(-1)!] : null,
    exp_avg_sq: factored(shape) ? null : shape,
  }),
  update(params, grads, state, o, { lr, lrScales, decayScales, layout }) {
    const offsets = { row: 0, col: 0, sq: 0 };
    for (const slot of layout) {
      const slotLr = lrScales ? lr * lrScales[slot.offset]! : lr;
      const wd = decayScales ? o.weightDecay * decayScales[slot.offset]! : o.weightDecay;
      const g = grads.subarray(slot.offset, slot.offset + slot.size);
      const u = preconditioned(g, slot, state, o, offsets); // [size]
      let sumSq = 0;
      for (const x of u) sumSq += x * x;
      const scale = slotLr / Math.max(1, Math.sqrt(sumSq / slot.size) / o.clipThreshold);
      const m = state.buffers.exp_avg?.subarray(slot.offset, slot.offset + slot.size);
      for (let i = 0; i < slot.size; i++) {
        let step = u[i]! * scale;
        if (m) step = m[i] = o.beta1! * m[i]! + (1 - o.beta1!) * step;
        const j = slot.offset + i;
        params[j] = params[j]! - slotLr * wd * params[j]! - step;
      }
    }
  },
};

/** g times the inverse root of the second-moment estimate, updating it; `offsets` walk the factored buffers. */
function preconditioned(
  g: Float32Array,
  slot: SlotLayout,
  state: OptimizerState,
  o: AdafactorOptions,
  offsets: { row: number; col: number; sq: number },
): Float64Array {
  const beta2t = 1 - state.step ** o.decayRate;
  const u = new Float64Array(g.length);
  if (!factored(slot.shape)) {
    const v = state.buffers.exp_avg_sq!.subarray(offsets.sq, (offsets.sq += slot.size));
    for (let i = 0; i < g.length; i++) {
      v[i] = beta2t * v[i]! + (1 - beta2t) * (g[i]! * g[i]! + o.eps1);
      u[i] = g[i]! / Math.sqrt(v[i]!);
    }
    return u;
  }
  const [R, C] = [slot.shape.at(-2)!, slot.shape.at(-1)!];
  const lead = slot.size / (R * C);
  const row = state.buffers.exp_avg_sq_row!.subarray(offsets.row, (offsets.row += lead * R));
  const col = state.buffers.exp_avg_sq_col!.subarray(offsets.col, (offsets.col += lead * C));
  for (let l = 0; l < lead; l++) {
    const [rows, cols] = [new Float64Array(R), new Float64Array(C)];
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) {
        const x = g[(l * R + r) * C + c]!;
        const G = x * x + o.eps1;
        rows[r]! += G;
        cols[c]! += G;
      }
    }
    let rowMean = 0;
    for (let r = 0; r < R; r++) {
      const k = l * R + r;
      row[k] = beta2t * row[k]! + (1 - beta2t) * (rows[r]! / C);
      rowMean += row[k]! / R;
    }
    for (let c = 0; c < C; c++) {
      const k = l * C + c;
      col[k] = beta2t * col[k]! + (1 - beta2t) * (cols[c]! / R);
    }
    for (let r = 0; r < R; r++) {
      const rFactor = 1 / Math.sqrt(row[l * R + r]! / rowMean);
      for (let c = 0; c < C; c++) {
        const i = (l * R + r) * C + c;
        u[i] = g[i]! * rFactor * (1 / Math.sqrt(col[l * C + c]!));
      }
    }
  }
  return u;
}
