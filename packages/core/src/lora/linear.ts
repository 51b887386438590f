// A frozen linear layer with named LoRA adapters (PEFT's LoraLinear semantics):
//   y = base(x) + dropout(x) A^T B^T * scaling,  A [r, in], B [out, r],
// or with DoRA (use_dora) the weight m (W + s B A) / ||W + s B A|| per row.
// Merge and unmerge are explicit calls, exact inverses up to float rounding.
import { tf } from '../backend/tf.js';
import { deriveSeed } from '../random.js';
import type { BaseDtype } from './base-dtype.js';
import {
  type BaseWeight,
  type PackedBase,
  disposePackedBase,
  packBase,
  storeBase,
  unpackBase,
} from './packed-base.js';
import { type LoraSettings, loraScaling, validateLoraSettings } from './config.js';
import { addBias, addSame, reshapeTo, scaleBy } from '../ops/shape-only.js';
import { seededDropout } from '../ops/dropout.js';
import { doraOutput, doraRowNorms } from './dora.js';
import { fusedLoraAvailable, fusedLoraLinear } from './fused-linear.js';
import { INIT_TITLES, type LoraInit, changesBase, initLora } from './init.js';

export interface LoraLinearOptions {
  /** Module path, e.g. "transformer.h.0.attn.c_attn"; names errors and PEFT keys. */
  name: string;
  /**
   * Frozen base weight: [out, in], or [in, out] when fanInFanOut (GPT-2's
   * Conv1D); a tensor, or its values on the host (which `baseDtype` can pack
   * without W ever being f32 on the device).
   */
  weight: BaseWeight;
  bias?: tf.Tensor1D | null;
  fanInFanOut?: boolean;
  /**
   * How W is stored (--base-dtype; default f32); packing needs W's host
   * values, or W already in NF4 (a bitsandbytes 4-bit checkpoint) for nf4.
   */
  baseDtype?: BaseDtype;
}

export interface LoraAdapter {
  readonly name: string;
  readonly settings: LoraSettings;
  readonly scaling: number;
  readonly a: tf.Variable<tf.Rank.R2>; // [r, in]
  readonly b: tf.Variable<tf.Rank.R2>; // [out, r]
  /** DoRA's magnitude m [out] (PEFT's lora_magnitude_vector); null without DoRA. */
  readonly magnitude: tf.Variable<tf.Rank.R1> | null;
}

export interface ForwardOptions {
  /** Applies LoRA dropout when true. */
  training?: boolean;
  /** Seed of the dropout mask (ops/dropout.ts; deterministic replicas need one per step and module). */
  dropoutSeed?: number;
}

let nextVariableId = 0;

export class LoraLinear {
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly fanInFanOut: boolean;
  // Variables (frozen unless a full fine-tune marks them trainable), updated in
  // place by merge, unmerge and PiSSA. W is null once stored packed.
  private stored: tf.Variable<tf.Rank.R2> | null;
  /** W packed as bf16, f16 or nf4 (storeBaseAs), with the kernel call that unpacks it. */
  private packed: PackedBase | null = null;
  private readonly weightShape: [number, number];
  readonly bias: tf.Variable<tf.Rank.R1> | null;
  private readonly adapters = new Map<string, LoraAdapter>();
  private active: string | null = null;
  private mergedAdapter: string | null = null;
  /** DoRA's row scale m / ||W + s B A|| at merge, which unmerge divides out again. */
  private mergedScale: tf.Tensor1D | null = null;

  constructor(options: LoraLinearOptions) {
    const { name, weight, baseDtype = 'f32' } = options;
    this.name = name;
    this.fanInFanOut = options.fanInFanOut ?? false;
    if (weight.shape.length !== 2) {
      throw new Error(`${name}: weight must be 2-D, got [${weight.shape.join(', ')}]`);
    }
    const [rows, cols] = weight.shape as [number, number];
    [this.outFeatures, this.inFeatures] = this.fanInFanOut ? [cols, rows] : [rows, cols];
    const id = nextVariableId++;
    this.weightShape = [rows, cols];
    const base = storeBase(
      weight,
      baseDtype,
      this.weightShape,
      this.fanInFanOut,
      name,
      `${name}.weight#${id}`,
    );
    [this.stored, this.packed] = [base.variable, base.packed];
    this.bias = options.bias ? tf.variable(options.bias, false, `${name}.bias#${id}`) : null;
    if (this.bias && this.bias.shape[0] !== this.outFeatures) {
      throw new Error(
        `${name}: bias has ${this.bias.shape[0]} values, expected ${this.outFeatures}`,
      );
    }
  }

  /** The frozen base weight in its storage orientation, f32 ([out, in], or [in, out] when fanInFanOut). */
  get weight(): tf.Variable<tf.Rank.R2> {
    if (this.stored === null) {
      throw new Error(
        `${this.name}: the base weight is stored as ${this.packed?.dtype} (--base-dtype); ` +
          `merge, unmerge, PiSSA, full fine-tuning and saving the model need --base-dtype f32`,
      );
    }
    return this.stored;
  }

  /** How W is stored: f32, or bf16 / f16 / nf4 after storeBaseAs. */
  get baseDtype(): BaseDtype {
    return this.packed?.dtype ?? 'f32';
  }

  /**
   * W as stored after storeBaseAs: its dtype and the kernel call that
   * unpacks it to f32 in its storage shape (packed-base.ts); null while W is f32.
   */
  get packedBase(): PackedBase | null {
    return this.packed;
  }

  /**
   * Stores W as 16-bit halves (--base-dtype bf16 or f16, rounded to nearest
   * even: half the bytes) or as NF4 (nf4: QLoRA's 4 bits and an absmax per
   * 64 values, as bitsandbytes); its f32 variable is freed. Forward unpacks W
   * to f32 for its matmul only. One way: there is no going back to f32.
   */
  async storeBaseAs(dtype: BaseDtype): Promise<void> {
    if (dtype === this.baseDtype) return;
    if (this.packed)
      throw new Error(`${this.name}: the base weight is stored as ${this.packed.dtype}`);
    if (this.merged) throw new Error(`${this.name}: unmerge before storing W in ${dtype}`);
    if (dtype === 'f32') return;
    const w = this.weight;
    const values = (await w.data()) as Float32Array;
    this.packed = packBase(values, dtype, this.weightShape, this.fanInFanOut);
    w.dispose();
    this.stored = null;
  }

  get activeAdapter(): LoraAdapter | null {
    return this.active === null ? null : (this.adapters.get(this.active) ?? null);
  }

  /** The variables a forward pass reads: W (while f32), the bias, the active adapter's factors. */
  variables(): tf.Variable[] {
    const a = this.activeAdapter;
    const all: (tf.Variable | null | undefined)[] = [
      this.stored,
      this.bias,
      a?.a,
      a?.b,
      a?.magnitude,
    ];
    return all.filter((v): v is tf.Variable => v !== null && v !== undefined);
  }

  get merged(): boolean {
    return this.mergedAdapter !== null;
  }

  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  adapter(name: string): LoraAdapter {
    const found = this.adapters.get(name);
    if (!found) {
      throw new Error(
        `${this.name}: no adapter "${name}" (have: ${this.adapterNames().join(', ') || 'none'})`,
      );
    }
    return found;
  }

  /**
   * Adds an adapter initialised by `init` and makes it active. PiSSA and
   * OLoRA rewrite the base weight, so they are allowed only as the first
   * adapter of a layer. They read W synchronously here: on backends without
   * synchronous reads (webgpu) use addAdapterAsync.
   */
  addAdapter(
    adapterName: string,
    settings: LoraSettings,
    init: LoraInit,
    seed: number,
  ): LoraAdapter {
    const weight = changesBase(init.kind) ? this.weightOutIn() : undefined;
    return this.addAdapterWith(adapterName, settings, init, seed, weight);
  }

  /** addAdapter on every backend: PiSSA and OLoRA read W with `await data()`. */
  async addAdapterAsync(
    adapterName: string,
    settings: LoraSettings,
    init: LoraInit,
    seed: number,
  ): Promise<LoraAdapter> {
    const weight = changesBase(init.kind) ? await this.weightOutInAsync() : undefined;
    return this.addAdapterWith(adapterName, settings, init, seed, weight);
  }

  /** `weight`: W as [out, in] values, for PiSSA and OLoRA. */
  private addAdapterWith(
    adapterName: string,
    settings: LoraSettings,
    init: LoraInit,
    seed: number,
    weight: Float32Array | undefined,
  ): LoraAdapter {
    this.assertCanAdd(adapterName, settings);
    const scaling = loraScaling(settings);
    if (changesBase(init.kind) && this.adapters.size > 0) {
      throw new Error(
        `${this.name}: ${INIT_TITLES[init.kind]} rewrites the base weight; use it for the first adapter only`,
      );
    }
    const shape = {
      r: settings.r,
      inFeatures: this.inFeatures,
      outFeatures: this.outFeatures,
      scaling,
    };
    const { a, b, residual } = initLora(init, shape, deriveSeed(seed, this.name), weight);
    if (residual) {
      tf.tidy(() => {
        const next = tf.tensor2d(residual, [this.outFeatures, this.inFeatures]);
        this.weight.assign(this.fanInFanOut ? next.transpose() : next);
      });
    }
    return this.loadAdapter(adapterName, settings, a, b);
  }

  /**
   * Adds an adapter from existing A [r, in] and B [out, r] values and makes
   * it active. With settings.useDora, `magnitude` [out] is DoRA's m (absent:
   * ||W + s B A|| per row, as PEFT initialises it).
   */
  loadAdapter(
    adapterName: string,
    settings: LoraSettings,
    a: Float32Array,
    b: Float32Array,
    magnitude?: Float32Array,
  ): LoraAdapter {
    this.assertCanAdd(adapterName, settings);
    const { r } = settings;
    if (a.length !== r * this.inFeatures || b.length !== this.outFeatures * r) {
      throw new Error(
        `${this.name}: adapter "${adapterName}" has A of ${a.length} and B of ${b.length} values; ` +
          `r=${r} needs A [${r}, ${this.inFeatures}] and B [${this.outFeatures}, ${r}]`,
      );
    }
    // tfjs variable names are global to the process: a serial number keeps two
    // models with the same module paths apart.
    if (magnitude && (!settings.useDora || magnitude.length !== this.outFeatures)) {
      throw new Error(
        `${this.name}: adapter "${adapterName}" has a DoRA magnitude of ${magnitude.length} values; ` +
          (settings.useDora ? `it needs ${this.outFeatures} (one per output)` : 'use_dora is off'),
      );
    }
    const prefix = `${this.name}.${adapterName}#${nextVariableId++}`;
    // tidy: the variable keeps the data, the tensor it was made from goes.
    const aVar = tf.tidy(() =>
      tf.variable(tf.tensor2d(a, [r, this.inFeatures]), true, `${prefix}.lora_A`),
    );
    const bVar = tf.tidy(() =>
      tf.variable(tf.tensor2d(b, [this.outFeatures, r]), true, `${prefix}.lora_B`),
    );
    const scaling = loraScaling(settings);
    const m = !settings.useDora
      ? null
      : tf.tidy(() =>
          tf.variable(
            magnitude ? tf.tensor1d(magnitude) : this.rowNorms(aVar, bVar, scaling),
            true,
            `${prefix}.lora_magnitude_vector`,
          ),
        );
    const adapter: LoraAdapter = {
      name: adapterName,
      settings: { ...settings },
      scaling,
      a: aVar,
      b: bVar,
      magnitude: m,
    };
    this.adapters.set(adapterName, adapter);
    this.active = adapterName;
    return adapter;
  }

  /** Switches the adapter used by forward (null: the base layer alone). */
  setActive(adapterName: string | null): void {
    if (this.merged) throw new Error(`${this.name}: unmerge before switching adapters`);
    if (adapterName !== null) this.adapter(adapterName);
    this.active = adapterName;
  }

  deleteAdapter(adapterName: string): void {
    if (this.mergedAdapter === adapterName)
      throw new Error(`${this.name}: unmerge "${adapterName}" first`);
    const adapter = this.adapter(adapterName);
    tf.dispose([adapter.a, adapter.b, ...(adapter.magnitude ? [adapter.magnitude] : [])]);
    this.adapters.delete(adapterName);
    if (this.active === adapterName) this.active = null;
  }

  /** x [..., in] -> [..., out]. */
  forward(x: tf.Tensor, options: ForwardOptions = {}): tf.Tensor {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2 = reshapeTo<tf.Rank.R2>(x, [-1, this.inFeatures]); // [N, in]
      const adapter = this.merged ? null : this.activeAdapter;
      const dropout = adapter?.settings.dropout ?? 0;
      const xd =
        adapter && options.training && dropout > 0
          ? (seededDropout(x2, dropout, options.dropoutSeed) as tf.Tensor2D)
          : null;
      if (adapter?.magnitude) {
        return reshapeTo(this.doraForward(x2, xd, adapter), [...lead, this.outFeatures]);
      }
      if (adapter && this.canFuse()) {
        const y = fusedLoraLinear({
          x: x2,
          xd,
          weight: () => this.baseWeight(),
          transposeW: !this.fanInFanOut,
          bias: this.bias,
          a: adapter.a,
          b: adapter.b,
          scaling: adapter.scaling,
        });
        return y.reshape([...lead, this.outFeatures]);
      }
      // Adds and scales that keep nothing for backward (ops/shape-only.ts).
      let y: tf.Tensor = this.baseMatMul(x2); // [N, out]
      if (this.bias) y = addBias(y, this.bias);
      if (adapter) {
        const h = tf.matMul(xd ?? x2, adapter.a, false, true); // [N, r]
        y = addSame(y, scaleBy(tf.matMul(h, adapter.b, false, true), adapter.scaling)); // [N, out]
      }
      return reshapeTo(y, [...lead, this.outFeatures]);
    });
  }

  /** DoRA (dora.ts) on this layer's W, the LoRA input being x after dropout when there is one. */
  private doraForward(x2: tf.Tensor2D, xd: tf.Tensor2D | null, adapter: LoraAdapter): tf.Tensor2D {
    const base = this.baseMatMul(x2); // [N, out]
    const dropped = xd ? this.baseMatMul(xd) : base;
    let y = doraOutput(base, dropped, xd ?? x2, adapter, (a, b) =>
      this.rowNorms(a, b, adapter.scaling),
    );
    if (this.bias) y = addBias(y, this.bias);
    return y;
  }

  /** ||W + s B A|| over each output's row [out]. */
  private rowNorms(a: tf.Tensor2D, b: tf.Tensor2D, scaling: number): tf.Tensor1D {
    return tf.tidy(() => {
      const { w } = this.baseWeight();
      return doraRowNorms(this.fanInFanOut ? w.transpose() : w, a, b, scaling);
    });
  }

  /** The fused kernels (webgpu) need a frozen base: they compute no dW or dbias. */
  private canFuse(): boolean {
    return fusedLoraAvailable() && !this.stored?.trainable && !this.bias?.trainable;
  }

  /** W for the fused path: the variable, or an f32 copy unpacked from its packed form. */
  private baseWeight(): { w: tf.Tensor2D; transient: boolean } {
    if (!this.packed) return { w: this.weight, transient: false };
    return { w: unpackBase(this.packed), transient: true };
  }

  /** x2 [N, in] -> x2 W^T [N, out], W from f32 or from its packed form. */
  private baseMatMul(x2: tf.Tensor2D): tf.Tensor2D {
    const transposeW = !this.fanInFanOut;
    if (!this.packed) return tf.matMul(x2, this.weight, false, transposeW);
    const packed = this.packed;
    const unpack = () => unpackBase(packed);
    // A custom gradient rebuilds W in the backward pass instead of keeping its
    // f32 copy alive until then: at any moment at most one layer's W is f32.
    const op = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const w = unpack();
      const value = tf.matMul(inputs[0] as tf.Tensor2D, w, false, transposeW);
      w.dispose();
      return {
        value,
        // y = x op(W): dy/dx = dy op(W)^T.
        gradFunc: (dy: tf.Tensor) =>
          tf.tidy(() => tf.matMul(dy as tf.Tensor2D, unpack(), false, !transposeW)),
      };
    });
    return op(x2) as tf.Tensor2D;
  }

  /** scaling * B A in the weight's storage orientation. */
  deltaWeight(adapterName: string): tf.Tensor2D {
    const adapter = this.adapter(adapterName);
    return tf.tidy(() => {
      const delta = tf.mul(tf.matMul(adapter.b, adapter.a), adapter.scaling) as tf.Tensor2D; // [out, in]
      return this.fanInFanOut ? delta.transpose() : delta;
    });
  }

  /**
   * Folds the active adapter into W, so inference has no extra matmul: W + s B A,
   * or with DoRA g (W + s B A), g = m / ||W + s B A|| per output.
   */
  merge(): void {
    if (this.merged)
      throw new Error(`${this.name}: adapter "${this.mergedAdapter}" is already merged`);
    const adapter = this.activeAdapter;
    if (!adapter) throw new Error(`${this.name}: no active adapter to merge`);
    tf.tidy(() => {
      const sum = tf.add(this.weight, this.deltaWeight(adapter.name)) as tf.Tensor2D;
      if (!adapter.magnitude) return this.weight.assign(sum);
      const norms = this.rowNorms(adapter.a, adapter.b, adapter.scaling);
      const g = tf.keep(tf.div(adapter.magnitude, norms) as tf.Tensor1D);
      this.mergedScale = g;
      this.weight.assign(tf.mul(sum, this.alongOutputs(g)) as tf.Tensor2D);
    });
    this.mergedAdapter = adapter.name;
  }

  /** Takes the merged adapter out of W again (the exact inverse of merge, up to rounding). */
  unmerge(): void {
    if (this.mergedAdapter === null) throw new Error(`${this.name}: nothing is merged`);
    const name = this.mergedAdapter;
    const g = this.mergedScale;
    tf.tidy(() => {
      const unscaled = g ? tf.div(this.weight, this.alongOutputs(g)) : this.weight;
      this.weight.assign(tf.sub(unscaled, this.deltaWeight(name)));
    });
    g?.dispose();
    this.mergedScale = null;
    this.mergedAdapter = null;
  }

  /** A per-output vector [out] shaped to scale W in its storage orientation. */
  private alongOutputs(v: tf.Tensor1D): tf.Tensor2D {
    return (this.fanInFanOut ? v.reshape([1, -1]) : v.reshape([-1, 1])) as tf.Tensor2D;
  }

  dispose(): void {
    for (const name of this.adapterNames()) {
      const { a, b, magnitude } = this.adapter(name);
      tf.dispose([a, b, ...(magnitude ? [magnitude] : [])]);
    }
    this.mergedScale?.dispose();
    this.adapters.clear();
    this.stored?.dispose();
    if (this.packed) disposePackedBase(this.packed);
    this.bias?.dispose();
  }

  private assertCanAdd(adapterName: string, settings: LoraSettings): void {
    validateLoraSettings(settings, `${this.name}: adapter "${adapterName}"`);
    if (this.adapters.has(adapterName))
      throw new Error(`${this.name}: adapter "${adapterName}" exists already`);
    if (this.merged) throw new Error(`${this.name}: unmerge before adding adapters`);
  }

  /** The weight as [out, in] values (PiSSA's view of W). */
  private weightOutIn(): Float32Array {
    return tf.tidy(
      () => (this.fanInFanOut ? this.weight.transpose() : this.weight).dataSync() as Float32Array,
    );
  }

  private async weightOutInAsync(): Promise<Float32Array> {
    const w = tf.tidy(() => (this.fanInFanOut ? this.weight.transpose() : this.weight.clone()));
    try {
      return (await w.data()) as Float32Array;
    } finally {
      w.dispose();
    }
  }
}
