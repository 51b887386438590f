// A token embedding with named LoRA adapters, PEFT's lora.Embedding semantics:
//   E'[id] = E[id] + (A^T[id] B^T) * scaling,  A [r, V], B [C, r],
// i.e. delta W = (B A)^T * scaling, [V, C]. PEFT initialises A to zeros and
// B from N(0, 1) (the reverse of a linear layer) and applies no dropout here.
// The base table E is the model's variable: this class adapts it, never owns it.
import { tf } from '../backend/tf.js';
import { Rng, deriveSeed } from '../random.js';
import { type LoraSettings, loraScaling, validateLoraSettings } from './config.js';

export interface LoraEmbeddingAdapter {
  readonly name: string;
  readonly settings: LoraSettings;
  readonly scaling: number;
  readonly a: tf.Variable<tf.Rank.R2>; // [r, V]
  readonly b: tf.Variable<tf.Rank.R2>; // [C, r]
}

let nextId = 0;

export class LoraEmbedding {
  readonly numEmbeddings: number;
  readonly dim: number;
  private readonly adapters = new Map<string, LoraEmbeddingAdapter>();
  private active: string | null = null;
  private mergedAdapter: string | null = null;

  /**
   * `name`: the module path ("model.embed_tokens"); `weight`: the model's [V, C]
   * table; `tiedToHead`: the output head reads the same table, so a merged
   * adapter would also change the head (PEFT's unmerged head does not see it).
   */
  constructor(
    readonly name: string,
    readonly weight: tf.Variable<tf.Rank.R2>,
    readonly tiedToHead: boolean,
  ) {
    [this.numEmbeddings, this.dim] = weight.shape;
  }

  get activeAdapter(): LoraEmbeddingAdapter | null {
    return this.active === null ? null : (this.adapters.get(this.active) ?? null);
  }

  get merged(): boolean {
    return this.mergedAdapter !== null;
  }

  /** Switches the adapter used by lookup (null: the table alone). */
  setActive(adapterName: string | null): void {
    if (this.merged) throw new Error(`${this.name}: unmerge before switching adapters`);
    if (adapterName !== null) this.adapter(adapterName);
    this.active = adapterName;
  }

  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  adapter(name: string): LoraEmbeddingAdapter {
    const found = this.adapters.get(name);
    if (!found) throw new Error(`${this.name}: no embedding adapter "${name}"`);
    return found;
  }

  /** PEFT's initialisation: A = 0, B ~ N(0, 1), seeded by `seed` and the module path. */
  addAdapter(adapterName: string, settings: LoraSettings, seed: number): LoraEmbeddingAdapter {
    const rng = new Rng(deriveSeed(seed, this.name));
    const b = new Float32Array(this.dim * settings.r);
    for (let i = 0; i < b.length; i++) b[i] = rng.normal();
    return this.loadAdapter(
      adapterName,
      settings,
      new Float32Array(settings.r * this.numEmbeddings),
      b,
    );
  }

  /** An adapter from A [r, V] and B [C, r] values, made active. */
  loadAdapter(
    adapterName: string,
    settings: LoraSettings,
    a: Float32Array,
    b: Float32Array,
  ): LoraEmbeddingAdapter {
    validateLoraSettings(settings, `${this.name}: adapter "${adapterName}"`);
    if (settings.useDora)
      throw new Error(
        `${this.name}: DoRA (use_dora) is supported on linear layers only, not on the token embedding`,
      );
    if (this.adapters.has(adapterName))
      throw new Error(`${this.name}: adapter "${adapterName}" exists already`);
    if (this.merged) throw new Error(`${this.name}: unmerge before adding adapters`);
    const { r } = settings;
    if (a.length !== r * this.numEmbeddings || b.length !== this.dim * r) {
      throw new Error(
        `${this.name}: embedding adapter "${adapterName}" has A of ${a.length} and B of ${b.length} values; ` +
          `r=${r} needs lora_embedding_A [${r}, ${this.numEmbeddings}] and lora_embedding_B [${this.dim}, ${r}]`,
      );
    }
    const prefix = `${this.name}.${adapterName}#emb${nextId++}`;
    const adapter: LoraEmbeddingAdapter = {
      name: adapterName,
      settings: { ...settings },
      scaling: loraScaling(settings),
      // tidy: the variable keeps the data, the tensor it was made from goes.
      a: tf.tidy(() =>
        tf.variable(tf.tensor2d(a, [r, this.numEmbeddings]), true, `${prefix}.lora_embedding_A`),
      ),
      b: tf.tidy(() =>
        tf.variable(tf.tensor2d(b, [this.dim, r]), true, `${prefix}.lora_embedding_B`),
      ),
    };
    this.adapters.set(adapterName, adapter);
    this.active = adapterName;
    return adapter;
  }

  /** ids [N] int32 -> rows [N, C], the active adapter added unless merged. */
  lookup(ids: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      let rows = tf.gather(this.weight, ids) as tf.Tensor2D; // [N, C]
      const adapter = this.activeAdapter;
      if (adapter && !this.merged) {
        const afterA = tf.gather(adapter.a.transpose(), ids) as tf.Tensor2D; // [N, r]
        const delta = tf.matMul(afterA, adapter.b, false, true); // [N, C]
        rows = tf.add(rows, tf.mul(delta, adapter.scaling));
      }
      return rows;
    });
  }

  /** (B A)^T * scaling, [V, C]. */
  deltaWeight(adapterName: string): tf.Tensor2D {
    const adapter = this.adapter(adapterName);
    return tf.tidy(() =>
      tf.mul(tf.matMul(adapter.a, adapter.b, true, true), adapter.scaling),
    ) as tf.Tensor2D; // A^T B^T = (B A)^T
  }

  merge(): void {
    if (this.merged) throw new Error(`${this.name}: adapter "${this.mergedAdapter}" is merged`);
    const adapter = this.activeAdapter;
    if (!adapter) throw new Error(`${this.name}: no active adapter to merge`);
    tf.tidy(() => this.weight.assign(tf.add(this.weight, this.deltaWeight(adapter.name))));
    this.mergedAdapter = adapter.name;
  }

  unmerge(): void {
    if (this.mergedAdapter === null) throw new Error(`${this.name}: nothing is merged`);
    const name = this.mergedAdapter;
    tf.tidy(() => this.weight.assign(tf.sub(this.weight, this.deltaWeight(name))));
    this.mergedAdapter = null;
  }

  /** Frees the adapters (the table belongs to the model). */
  dispose(): void {
    for (const adapter of this.adapters.values()) tf.dispose([adapter.a, adapter.b]);
    this.adapters.clear();
    this.active = null;
  }
}
