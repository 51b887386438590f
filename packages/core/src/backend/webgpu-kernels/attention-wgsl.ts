// WGSL fragments of the fused attention kernels (attention.ts): the own
// row's registers, dot products and accumulations against a tile staged in
// workgroup memory, vec4 when the head size allows, and the dropout mask's
// multiplier of a (query, key) pair.
import { LOWBIAS32_WGSL } from './dropout.js';

/** WGSL fragments for a head size: D as DW values of width W (vec4 when D % 4 == 0). */
export class Gen {
  readonly w: 1 | 4;
  readonly dw: number;
  /** `drop`: dropout on the probabilities (the kernel has `keys` and the mask's uniforms). */
  constructor(
    readonly d: number,
    readonly drop = false,
  ) {
    this.w = d % 4 === 0 ? 4 : 1;
    this.dw = d / this.w;
  }
  /**
   * p_ij times the dropout multiplier of the pair met at tile row jj (p
   * itself without dropout): the own row is query i on a walk over keys, key
   * j on a walk over queries.
   */
  kept(p: string, over: 'keys' | 'queries'): string {
    if (!this.drop) return p;
    return over === 'keys' ? `${p} * keep(head, tc, r0 + jj)` : `${p} * keep(head, r0 + jj, tc)`;
  }
  get type(): string {
    return this.w === 4 ? 'vec4<f32>' : 'f32';
  }
  private each(f: (c: number) => string, sep: string): string {
    return Array.from({ length: this.dw }, (_, c) => f(c)).join(sep);
  }
  /** own row `a` (registers a_c) . tile row jj of `b` (workgroup array s_b). */
  dot(a: string, b: string): string {
    const term = (c: number) => `s_${b}[jj * ${this.dw} + ${c}]`;
    return this.w === 4
      ? this.each((c) => `dot(${a}_${c}, ${term(c)})`, ' + ')
      : this.each((c) => `${a}_${c} * ${term(c)}`, ' + ');
  }
  /** Registers a_c of the own row. */
  load(a: string): string {
    return this.each((c) => `let ${a}_${c} = ${a}[row * ${this.dw} + ${c}];`, '\n      ');
  }
  /** acc_c += weight * tile row jj of `b`. */
  accumulate(weight: string, b: string): string {
    const w = this.w === 4 ? `vec4<f32>(${weight})` : weight;
    return this.each(
      (c) => `acc_${c} = fma(${w}, s_${b}[jj * ${this.dw} + ${c}], acc_${c});`,
      '\n          ',
    );
  }
  zeroAcc(): string {
    return this.each((c) => `var acc_${c} = ${this.type}(0.0);`, ' ');
  }
  /** Writes scale * acc as the own row of the [R, T, D] output. */
  writeAcc(scale: string): string {
    const lanes = this.w === 4 ? [0, 1, 2, 3] : [null];
    return this.each(
      (c) =>
        lanes
          .map((e) => {
            const v = e === null ? `acc_${c}` : `acc_${c}[${e}]`;
            return `setOutputAtIndex(row * ${this.d} + ${c * this.w + (e ?? 0)}, ${scale}${v});`;
          })
          .join(' '),
      '\n        ',
    );
  }
}

/** The dropout multiplier of query i and key j of head r: ops/dropout.ts's mask at (r T + i) T + j. */
export const KEEP_WGSL = `${LOWBIAS32_WGSL}
    fn keep(r : i32, i : i32, j : i32) -> f32 {
      let n = u32(uniforms.seq);
      let index = (u32(r) * n + u32(i)) * n + u32(j);
      let h = lowbias32(lowbias32(index ^ bitcast<u32>(keys[0])) ^ bitcast<u32>(keys[1]));
      return select(0.0, uniforms.dropScale, h >= bitcast<u32>(uniforms.threshold));
    }`;
