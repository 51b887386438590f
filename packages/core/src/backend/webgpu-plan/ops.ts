// The project's WebGPU kernels as the calls a hand-scheduled step is written
// in: each records one kernel (or program) into a PlanRecorder and returns
// its output, a virtual tensor of the plan. Shapes in the comments; the
// kernels themselves are in ../webgpu-kernels/ (docs/webgpu-kernels.md).
import type { tf } from '../tf.js';
import { GELU_NEW, GELU_NEW_GRAD } from '../gelu-layer-norm.js';
import { TOKEN_STATS } from '../token-stats.js';
import { GATED, type GatedActivation } from '../../ops/gated.js';
import {
  ATTN_DELTA,
  ATTN_GRAD,
  ATTN_OUT,
  ATTN_STATS,
  LORAFLEET_MATMUL,
  LORAFLEET_XENT,
  NORM_APPLY,
  NORM_GRAD,
  NORM_STATS,
  type LoraFleetMatMulAttrs,
  type NormKind,
  loraFleetMatMulAttrs,
} from '../webgpu-kernels/index.js';
import {
  accumulateProgram,
  dropoutProgram,
  addProgram,
  embedProgram,
  headsProgram,
  columnsProgram,
  joinColumnsProgram,
  lossSumsProgram,
  mergeHeadsProgram,
  ropeProgram,
  scaleProgram,
  softcapInPlaceProgram,
  xentGradInPlaceProgram,
} from '../webgpu-kernels/plumbing.js';
import {
  doraMagnitudeGradProgram,
  doraMixProgram,
  doraNormsProgram,
  doraScaleProgram,
} from '../webgpu-kernels/dora.js';
import type { PlanRecorder } from './recorder.js';
import { dropoutKeys } from '../../ops/dropout.js';
import type { UnpackCall } from '../../lora/packed-base.js';

type Info = tf.TensorInfo;

/** The same data seen in another shape. */
export const view = (t: Info, shape: number[]): Info => ({ ...t, shape });

/**
 * Attention's saved values: q, k, v, o [R, T, D], lse [R, T], and what
 * shaped it (AttentionShaping).
 */
export interface AttentionSaved extends Required<AttentionShaping> {
  q: Info;
  k: Info;
  v: Info;
  o: Info;
  lse: Info;
}

/** What shapes attention besides causality; each absent or 0: none. */
export interface AttentionShaping {
  /** The probabilities' dropout mask. */
  drop?: PlanDropout | null;
  /** A sliding window: query i sees keys i - window + 1 .. i. */
  window?: number;
  /** Soft-capping of the scores, cap tanh(s / cap). */
  softcap?: number;
  /** Packed documents: each token's (first, last) token of its document in its row, [B*T, 2] int32. */
  spans?: Info | null;
}

/** A dropout mask in a plan: its keys [2] int32 (a plan input written per replay) and rate. */
export interface PlanDropout {
  keys: Info;
  rate: number;
}

export class PlanOps {
  constructor(readonly rec: PlanRecorder) {}

  /**
   * C = alpha op(a) op(b) (+ bias) (+ beta h op(l)) (+ residual [M, N]), one
   * dispatch (split-k where it pays, and there is no LoRA term or residual).
   */
  mm(
    a: Info,
    b: Info,
    attrs: Partial<LoraFleetMatMulAttrs> = {},
    extra: { bias?: Info | null; h?: Info; l?: Info; residual?: Info | null } = {},
  ): Info {
    const full = loraFleetMatMulAttrs(attrs);
    const inputs: Record<string, Info> = { a, b };
    if (extra.bias) inputs.bias = extra.bias;
    if (extra.h && extra.l) Object.assign(inputs, { h: extra.h, l: extra.l });
    if (extra.residual) inputs.r = extra.residual;
    return this.rec.kernel(LORAFLEET_MATMUL, inputs, full as unknown as Record<string, unknown>);
  }

  /** y [n, C] = norm(x) gamma (+ beta) and the row statistics [n, 2] backward needs. */
  norm(
    x: Info,
    gamma: Info,
    beta: Info | null,
    eps: number,
    kind: NormKind,
  ): { y: Info; stats: Info } {
    const stats = this.rec.kernel(NORM_STATS, { x }, { kind, eps });
    const inputs: Record<string, Info> = { x, stats, gamma };
    if (beta) inputs.beta = beta;
    return { y: this.rec.kernel(NORM_APPLY, inputs), stats };
  }

  /**
   * dx [n, C] of the norm (frozen gamma and beta), plus `residual` [n, C]
   * (the gradient a residual stream carries past the norm) in the same pass.
   */
  normGrad(
    x: Info,
    stats: Info,
    gamma: Info,
    dy: Info,
    kind: NormKind,
    residual: Info | null = null,
  ): Info {
    const inputs = { x, stats, gamma, dy, ...(residual ? { r: residual } : {}) };
    return this.rec.kernel(NORM_GRAD, inputs, { kind });
  }

  geluNew(x: Info): Info {
    return this.rec.kernel(GELU_NEW, { x });
  }

  geluNewGrad(x: Info, dy: Info): Info {
    return this.rec.kernel(GELU_NEW_GRAD, { x, dy });
  }

  /**
   * softmax(softcap(scale q k^T) + causal mask) v over q, k, v [R, T, D]
   * (R = B x heads), shaped by `shaping`: o [R, T, D] and what backward keeps.
   */
  attention(
    q: Info,
    k: Info,
    v: Info,
    scale: number,
    shaping: AttentionShaping = {},
  ): AttentionSaved {
    const shaped = { drop: null, window: 0, softcap: 0, spans: null, ...shaping };
    const { drop, window, softcap, spans } = shaped;
    const documents: Record<string, Info> = spans ? { spans } : {};
    const lse = this.rec.kernel(ATTN_STATS, { q, k, ...documents }, { scale, window, softcap });
    const masked: Record<string, Info> = drop ? { ...documents, keys: drop.keys } : documents;
    const attrs = { scale, dropRate: drop?.rate ?? 0, window, softcap };
    const o = this.rec.kernel(ATTN_OUT, { q, k, v, lse, ...masked }, attrs);
    return { q, k, v, o, lse, ...shaped };
  }

  /** dq, dk, dv [R, T, D] from do [R, T, D]. */
  attentionGrad(s: AttentionSaved, dy: Info, scale: number): { dq: Info; dk: Info; dv: Info } {
    const delta = this.rec.kernel(ATTN_DELTA, { dy, o: s.o });
    const inputs = { q: s.q, k: s.k, v: s.v, dy, lse: s.lse, delta };
    const masked: Record<string, Info> = {
      ...(s.spans ? { spans: s.spans } : {}),
      ...(s.drop ? { keys: s.drop.keys } : {}),
    };
    const attrs = { scale, dropRate: s.drop?.rate ?? 0, window: s.window, softcap: s.softcap };
    const grad = (wrt: 'q' | 'k' | 'v') =>
      this.rec.kernel(ATTN_GRAD, { ...inputs, ...masked }, { ...attrs, wrt });
    return { dq: grad('q'), dk: grad('k'), dv: grad('v') };
  }

  /** act(gate) * up, elementwise: SwiGLU (silu) or GeGLU (gelu_tanh). */
  gated(kind: GatedActivation, gate: Info, up: Info): Info {
    return this.rec.kernel(GATED[kind].forward, { gate, up });
  }

  /** d gate and d up of gated(kind). */
  gatedGrad(kind: GatedActivation, gate: Info, up: Info, dy: Info): { dGate: Info; dUp: Info } {
    const { grad } = GATED[kind];
    return {
      dGate: this.rec.kernel(grad, { gate, up, dy }, { wrt: 'gate' }),
      dUp: this.rec.kernel(grad, { gate, dy }, { wrt: 'up' }),
    };
  }

  /**
   * x [N, C] = (wte[ids] + noise) scale (+ wpe[position] when given: the
   * token's place in its row, or `positions` [N] int32, packed documents'
   * own); `noise` [N, C]: NEFTune's, absent: none.
   */
  embed(
    ids: Info,
    wte: Info,
    wpe: Info | null,
    seq: number,
    more: { scale?: number; positions?: Info | null; noise?: Info | null } = {},
  ): Info {
    const [n] = ids.shape as [number];
    const c = wte.shape[1]!;
    const { scale = 1, positions = null, noise = null } = more;
    const packed = wpe !== null && positions !== null;
    const withNoise = noise !== null;
    const { program, uniforms } = embedProgram(n, c, seq, wpe !== null, scale, packed, withNoise);
    const inputs = [
      ...[ids, wte, ...(wpe ? [wpe] : []), ...(packed ? [positions] : [])],
      ...(noise ? [noise] : []),
    ];
    return view(this.rec.program(program, inputs, uniforms), [n, c]);
  }

  /**
   * Heads [B*H, T, D] from the columns of src [B*T, W] that start at
   * `first`; with `group` G, head h reads source head floor(h / G)
   * (grouped-query keys and values repeated).
   */
  heads(src: Info, b: number, h: number, t: number, d: number, first: number, group = 1): Info {
    const { program, uniforms } = headsProgram(b, h, t, d, src.shape[1]!, first, group);
    return view(this.rec.program(program, [src], uniforms), [b * h, t, d]);
  }

  /**
   * Heads [B*H*G, T, D] (one, or q, k, v) back to rows [B*T, P*H*D]; with
   * `group` G each output head sums its G source heads (the gradient of a
   * grouped heads()).
   */
  mergeHeads(parts: Info[], b: number, h: number, t: number, group = 1): Info {
    const d = parts[0]!.shape[2]!;
    const { program, uniforms } = mergeHeadsProgram(b, h, t, d, parts.length as 1 | 3, group);
    return view(this.rec.program(program, parts, uniforms), [b * t, parts.length * h * d]);
  }

  /**
   * Rotary embedding of x [R, T, D] by tables [P, Rd] (Rd < D: the first Rd
   * dims rotate, the rest pass), row t of x by table row t, or by
   * `positions` [B*T] int32 (packed documents' own; R = B x heads);
   * `backward`: its transpose (the gradient); `interleaved`: adjacent pairs
   * turn (GLM), not rotate-half's.
   */
  rope(
    x: Info,
    cos: Info,
    sin: Info,
    backward = false,
    interleaved = false,
    positions: Info | null = null,
  ): Info {
    const [r, t, d] = x.shape as [number, number, number];
    const perItem = positions === null ? 0 : (r * t) / positions.shape[0]!;
    const rot = cos.shape[1]!;
    const { program, uniforms } = ropeProgram(r, t, d, backward, rot, interleaved, perItem);
    const inputs = positions === null ? [x, cos, sin] : [x, cos, sin, positions];
    return view(this.rec.program(program, inputs, uniforms), [r, t, d]);
  }

  /** Columns first .. first + width of x [N, W], as [N, width] (Phi-3's fused gate_up_proj split). */
  columns(x: Info, first: number, width: number): Info {
    const [n, w] = x.shape as [number, number];
    const { program, uniforms } = columnsProgram(n, w, first, width);
    return view(this.rec.program(program, [x], uniforms), [n, width]);
  }

  /** [N, a + b (+ c)] from [N, a], [N, b] (and [N, c]): the gradient of columns() of one source. */
  joinColumns(parts: Info[]): Info {
    const n = parts[0]!.shape[0]!;
    const widths = parts.map((p) => p.shape[1]!);
    const { program, uniforms } = joinColumnsProgram(n, widths);
    const width = widths.reduce((a, b) => a + b, 0);
    return view(this.rec.program(program, parts, uniforms), [n, width]);
  }

  add(a: Info, b: Info): Info {
    const { program, uniforms } = addProgram(a.shape);
    return view(this.rec.program(program, [a, b], uniforms), a.shape);
  }

  /**
   * Per row (nll, lse) [n, 2] of logits [n, W] against labels (negative:
   * ignored), over the first `vocab` columns (W: rows padded beyond it).
   */
  crossEntropy(logits: Info, labels: Info, vocab = logits.shape[1]!): Info {
    return this.rec.kernel(LORAFLEET_XENT, { logits, labels }, { vocab });
  }

  /**
   * dlogits [n, W] for the per-row loss weights dy [n], written over
   * `logits` (which nothing reads after): returns it; padding columns past
   * `vocab` become 0. With `softcap`, the logits are capped ones
   * (softcapInPlace) and the result is the gradient of the raw logits.
   */
  crossEntropyGradInPlace(
    logits: Info,
    stats: Info,
    labels: Info,
    dy: Info,
    vocab = logits.shape[1]!,
    softcap = 0,
  ): Info {
    const [n, width] = logits.shape as [number, number];
    const { program, uniforms } = xentGradInPlaceProgram(n, vocab, width, softcap);
    this.rec.program(program, [stats, labels, dy], uniforms, logits);
    return logits;
  }

  /** x times `factor`, a new tensor of x's shape. */
  scale(x: Info, factor: number): Info {
    const count = x.shape.reduce((a, b) => a * b, 1);
    const { program, uniforms } = scaleProgram(count, factor);
    return view(this.rec.program(program, [view(x, [count, 1])], uniforms), x.shape);
  }

  /** x = cap tanh(x / cap), in place (Gemma 2's logits); returns x. */
  softcapInPlace(x: Info, cap: number): Info {
    const count = x.shape.reduce((a, b) => a * b, 1);
    const { program, uniforms } = softcapInPlaceProgram(count, cap);
    this.rec.program(program, [], uniforms, view(x, [count, 1]));
    return x;
  }

  /** x times dropout's mask (ops/dropout.ts's bits for the keys written per replay). */
  dropout(x: Info, { keys, rate }: PlanDropout): Info {
    const { threshold, scale } = dropoutKeys(0, rate); // neither depends on the seed
    const count = x.shape.reduce((a, b) => a * b, 1);
    const { program, uniforms } = dropoutProgram(count, threshold, scale);
    return view(this.rec.program(program, [view(x, [count]), keys], uniforms), x.shape);
  }

  /** W in f32 as stored, from its packed form (--base-dtype; lora/packed-base.ts). */
  unpackBase({ kernel, inputs, attrs }: UnpackCall): Info {
    return this.rec.kernel(kernel, inputs, attrs);
  }

  /**
   * Per row (hit, entropy) [n, 2] of logits [n, W] against labels, over the
   * first `vocab` columns: TRL's token metrics (ops/token-stats.ts).
   */
  tokenStats(logits: Info, labels: Info, vocab = logits.shape[1]!): Info {
    return this.rec.kernel(TOKEN_STATS, { logits, labels }, { vocab });
  }

  /**
   * [3]: the summed nll of the cross-entropy's stats [n, 2], then the sums
   * of tokenStats' [n, 2] (hits, entropy).
   */
  lossSums(stats: Info, tokens: Info): Info {
    const { program, uniforms } = lossSumsProgram(stats.shape[0]!);
    return view(this.rec.program(program, [stats, tokens], uniforms), [3]);
  }

  /**
   * DoRA's n [C]: the norm of each output's weights in W + D (D = s B A in
   * W's storage orientation): rows of [C, K], or columns of [K, C] when
   * `columns` (GPT-2's Conv1D).
   */
  doraNorms(w: Info, d: Info, columns: boolean): Info {
    const [rows, cols] = w.shape as [number, number];
    const [c, k] = columns ? [cols, rows] : [rows, cols];
    const { program, uniforms } = doraNormsProgram(c, k, columns);
    return view(this.rec.program(program, [w, d], uniforms), [c]);
  }

  /** x [N, C] times (m / n + offset) per column (+ bias [C]); m, n [C]. */
  doraScale(x: Info, m: Info, n: Info, offset: number, bias: Info | null = null): Info {
    const [rows, cols] = x.shape as [number, number];
    const { program, uniforms } = doraScaleProgram(rows, cols, offset, bias !== null);
    return this.rec.program(program, bias ? [x, m, n, bias] : [x, m, n], uniforms);
  }

  /** base + (g - 1) dropped + g lora, g = m / n per column: [N, C] each. */
  doraMix(base: Info, dropped: Info, lora: Info, m: Info, n: Info): Info {
    const [rows, cols] = base.shape as [number, number];
    const { program, uniforms } = doraMixProgram(rows, cols);
    return this.rec.program(program, [base, dropped, lora, m, n], uniforms);
  }

  /** dm [C] = the column sums of dy (z (+ z2)), divided by n: DoRA's magnitude gradient. */
  doraMagnitudeGrad(dy: Info, z: Info, z2: Info | null, n: Info): Info {
    const [rows, cols] = dy.shape as [number, number];
    const { program, uniforms } = doraMagnitudeGradProgram(rows, cols, z2 !== null);
    const inputs = z2 ? [dy, z, z2, n] : [dy, z, n];
    return view(this.rec.program(program, inputs, uniforms), [cols]);
  }

  /** into += x (into: a real tensor of x's size, outside the plan). */
  accumulate(into: Info, x: Info): void {
    const length = x.shape.reduce((a, b) => a * b, 1);
    const { program, uniforms } = accumulateProgram(length);
    this.rec.program(program, [view(x, [length, 1])], uniforms, view(into, [length, 1]));
  }
}
