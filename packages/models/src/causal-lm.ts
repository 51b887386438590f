// The contract every model family meets: what training, evaluation,
// generation, merge and the distributed runtime use, whatever the
// architecture. A family (gpt2/, llama/) implements it and registers itself
// in families.ts under the config.json model_type values it reads.
import type { BaseDtype, LoraEmbedding, LoraLinear, Nf4Packed, tf } from '@lorafleet/core';
import type { ScheduledStepRecipe } from './scheduled-step.js';

/** config.json's model_type values this project reads (families.ts maps each to its family). */
export type ModelType =
  | 'gpt2'
  | 'llama'
  | 'mistral'
  | 'qwen2'
  | 'qwen3'
  | 'gemma'
  | 'gemma2'
  | 'gemma3_text'
  | 'gemma3'
  | 'granite'
  | 'smollm3'
  | 'phi3'
  | 'olmo2'
  | 'olmo3'
  | 'exaone4'
  | 'glm'
  | 'glm4';

/** Hugging Face tensor name -> value, row-major. */
/**
 * Weights by Hugging Face name. A linear W read from a bitsandbytes 4-bit
 * folder also carries `nf4` (its bytes and absmax, kept for --base-dtype
 * nf4); its `data` is then dequantized on each read.
 */
export type WeightMap = Map<string, { shape: number[]; data: Float32Array; nf4?: Nf4Packed }>;

/** What every caller may know of a model's config, whatever its family. */
export interface ModelConfig<A = unknown> {
  readonly modelType: ModelType;
  /**
   * The folder stores its linear layers as bitsandbytes NF4 (config.json's
   * quantization_config; bnb-4bit.ts): W is read as it is stored.
   */
  readonly bnbNf4?: boolean;
  readonly vocabSize: number;
  /** The longest sequence the model takes (n_positions, max_position_embeddings). */
  readonly contextLength: number;
  /**
   * A row longer than this rotates every position with other frequencies
   * (Phi-3's LongRoPE past original_max_position_embeddings), so keys cached
   * while it was shorter are stale: kv-cache.ts recomputes them. Absent: none.
   */
  readonly rotarySwitch?: number;
  readonly hiddenSize: number;
  readonly numLayers: number;
  /** Attention (query) heads per layer. */
  readonly numHeads: number;
  /** The family's own fields (Gpt2Config, LlamaConfig), as read from config.json. */
  readonly arch: A;
}

export interface ForwardPassOptions {
  /** Dropout on (the config's probabilities and LoRA's) when true. */
  training?: boolean;
  /** Base seed of every dropout mask in this pass; replicas must agree on it. */
  seed?: number;
  /**
   * While training: draw dropout masks (the default); false trains without
   * any dropout (the preference objectives, as TRL's trainers with their default disable_dropout).
   */
  dropout?: boolean;
  /** NEFTune's alpha (neftune.ts): noise on the input embeddings while training; absent or 0: none. */
  neftuneAlpha?: number;
  /**
   * While training: keep only each block's input for backward and run the
   * block again there (core's checkpoint, as transformers'
   * gradient_checkpointing): less memory for one more forward pass.
   */
  gradientCheckpointing?: boolean;
  /**
   * [B*T] rows that pack several documents apart (TokenBatch.positionIds):
   * each token's position within its document, which it is embedded or
   * rotated at; it attends to its own document's earlier tokens only
   * (packed-documents.ts). Absent: positions 0..T-1, causal over the row.
   */
  positionIds?: Int32Array;
}

// A type alias, not an interface, so that tf.tidy accepts it as a TensorContainer.
export type LayerKv = {
  keys: tf.Tensor4D; // [B, Hkv, T, D]
  values: tf.Tensor4D; // [B, Hkv, T, D]
};

/** One inference pass over new tokens that attend to cached keys and values (kv-cache.ts). */
export interface CachedPass {
  ids: tf.Tensor2D; // [B, T] int32
  /** Each new token's position id, [B, T] int32, and the same values on the host. */
  positions: tf.Tensor2D;
  positionIds: Int32Array;
  /**
   * The additive attention bias [B, 1, T, Tpast + T]: 0 where a query may see
   * a key, a large negative number where not (future, left padding, and
   * outside `window` tokens when one is given).
   */
  bias(window: number | null): tf.Tensor4D;
  /** Every layer's keys and values so far, or null on the first pass. */
  past: readonly LayerKv[] | null;
}

/** A linear layer by its PEFT module path, with its sizes and storage orientation. */
export interface LinearModule {
  name: string;
  inFeatures: number;
  outFeatures: number;
  /** True when the weight is stored [in, out] (GPT-2's Conv1D), false for nn.Linear's [out, in]. */
  fanInFanOut: boolean;
}

/** An embedding table by its PEFT module path: [numEmbeddings, dim]. */
export interface EmbeddingModule {
  name: string;
  numEmbeddings: number;
  dim: number;
  /** The output head reads this table (tie_word_embeddings). */
  tiedToHead: boolean;
}

export interface CausalLM {
  readonly modelConfig: ModelConfig;
  /** ids [B, T] (int32) -> logits [B, T, V]. */
  forward(ids: tf.Tensor2D, options?: ForwardPassOptions): tf.Tensor3D;
  /** ids [B, T] -> the final hidden states [B, T, C], after the last norm. */
  hidden(ids: tf.Tensor2D, options?: ForwardPassOptions): tf.Tensor3D;
  /** The LM head: hidden [N, C] -> logits [N, V]. */
  logits(hidden: tf.Tensor2D): tf.Tensor2D;
  /** The variables `logits` reads (the head, or the embedding tied to it): what a checkpointed loss differentiates. */
  headVariables(): tf.Variable[];
  /** Runs a cached pass: the last column's hidden state [B, C] and every layer's extended keys/values. */
  extend(pass: CachedPass): { last: tf.Tensor2D; layers: LayerKv[] };
  /** Every linear layer (LoRA's possible targets), in model order. */
  linears(): LoraLinear[];
  /** The token embedding as PEFT's lora.Embedding target ("model.embed_tokens", "transformer.wte"). */
  embeddings(): LoraEmbedding[];
  /**
   * Every base tensor held as an f32 variable, under its Hugging Face name, in
   * a fixed order (full fine-tuning, modules_to_save); a linear layer's W
   * stored packed (--base-dtype) is none and is left out.
   */
  namedWeights(): [string, tf.Variable][];
  /**
   * The base weights' current values (merged adapters included), Hugging Face
   * names; read with `await data()`, which GPU backends require.
   */
  readWeights(): Promise<WeightMap>;
  parameterCount(): number;
  /** The hand-scheduled training step on webgpu (scheduled-step.ts), where the family has one. */
  readonly scheduledStep?: ScheduledStepRecipe;
  dispose(): void;
}

export interface SaveOptions {
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Fields added to (or replacing those of) the written config.json. */
  configExtra?: Record<string, unknown>;
  /**
   * The folder the model was loaded from: the fields of its config.json that
   * the family does not write (pad_token_id, initializer_range, auto_map, ...)
   * are kept, so that the saved folder describes the same model to every
   * tool; those that describe how its weights were stored are not
   * (STORAGE_FIELDS).
   */
  sourceDir?: string;
}

/**
 * One architecture: how to read its config.json, build it, load and save its
 * weights under Hugging Face names, and which linear layers LoRA may adapt.
 * Methods (not function properties), so that a ModelFamily<LlamaConfig> is
 * usable where the registry holds a ModelFamily<unknown>.
 */
export interface ModelFamily<A> {
  /** The family's name in messages and docs ("GPT-2", "Llama"). */
  readonly name: string;
  /** PEFT target names a LoRA run of this model adapts when none are given (PEFT's own defaults). */
  defaultTargets(config: ModelConfig<A>): readonly string[];
  /** config.json (already parsed, model_type checked) -> the family's config; throws ModelConfigError. */
  readConfig(json: Record<string, unknown>, modelType: ModelType, source: string): ModelConfig<A>;
  /** config.json as transformers writes it for this config. */
  configToJson(config: ModelConfig<A>, extra?: Record<string, unknown>): Record<string, unknown>;
  /** Every stored tensor's Hugging Face name and shape (a tied head excluded). */
  weightShapes(config: ModelConfig<A>): Map<string, number[]>;
  linearModules(config: ModelConfig<A>): LinearModule[];
  /** The token embedding (PEFT's lora.Embedding target), by module path, and whether the head shares it. */
  embeddingModules(config: ModelConfig<A>): EmbeddingModule[];
  /** Reads and checks the weights of a folder (names, shapes; half precision converted to f32). */
  readWeights(dir: string, config: ModelConfig<A>): Promise<WeightMap>;
  /** Random weights as transformers initialises them (for `lorafleet init` and tests). */
  randomWeights(config: ModelConfig<A>, seed: number): WeightMap;
  /** The model, its linear layers' frozen W stored as `baseDtype` (--base-dtype; default f32). */
  build(config: ModelConfig<A>, weights: WeightMap, baseDtype?: BaseDtype): CausalLM;
  /**
   * Writes a model folder (families.ts writeModelFolder). Absent:
   * config.json from configToJson and weightShapes' tensors under their
   * names. Gemma 3's multimodal folder also holds a vision tower that the
   * model never computes.
   */
  writeFolder?(
    dir: string,
    config: ModelConfig<A>,
    weights: WeightMap,
    options: SaveOptions,
  ): Promise<void>;
  /**
   * The module path that a saved adapter's target_modules are confined to,
   * where the checkpoint holds modules of the same names that this project
   * does not load (Gemma 3's vision tower has q_proj too). Absent: none.
   */
  readonly targetScope?: string;
  /**
   * Where the family computes part of the checkpoint only, which part, for
   * the run's log ("its text model; the vision tower is kept as stored").
   */
  readonly computes?: string;
}
