// GPT-2 (Radford et al. 2019) on tfjs, matching Hugging Face's GPT2LMHeadModel:
// learned positions, pre-LayerNorm blocks, causal self-attention, gelu_new MLP,
// LM head tied to the token embedding. Every Conv1D is a LoraLinear (weights
// stored [in, out], fanInFanOut), named by its PEFT module path.
import {
  type BaseDtype,
  LoraEmbedding,
  LoraLinear,
  addSame,
  geluNew as coreGeluNew,
  layerNorm as coreLayerNorm,
  causalAttention,
  checkpoint,
  reshapeTo,
  seededDropout,
  tf,
} from '@lorafleet/core';
import { neftuneNoise } from '../neftune.js';
import {
  type DocumentLayout,
  checkContext,
  documentAttention,
  documentLayout,
} from '../packed-documents.js';
import type {
  CachedPass,
  CausalLM,
  ForwardPassOptions,
  LayerKv,
  ModelConfig,
  WeightMap,
} from '../causal-lm.js';
import { type Gpt2Config, gpt2ModelConfig, mlpWidth } from './config.js';
import { gpt2Extend } from './cached.js';
import { gpt2ScheduledStep } from './scheduled.js';
import { type Gpt2BlockSeeds, gpt2Seeds } from './seeds.js';
import type { ScheduledStepRecipe } from '../scheduled-step.js';
import { countElements, readNamedWeights } from '../weight-values.js';

export interface LayerNorm {
  gamma: tf.Variable<tf.Rank.R1>;
  beta: tf.Variable<tf.Rank.R1>;
}

export interface Gpt2Block {
  ln1: LayerNorm;
  cAttn: LoraLinear; // [C] -> [3C]
  attnProj: LoraLinear; // [C] -> [C]
  ln2: LayerNorm;
  cFc: LoraLinear; // [C] -> [4C]
  mlpProj: LoraLinear; // [4C] -> [C]
}

export type { WeightMap };

export type Gpt2ForwardOptions = ForwardPassOptions;

export const PREFIX = 'transformer.';

/** The names and shapes of every tensor a GPT-2 of this config holds (tied head excluded). */
export function gpt2WeightShapes(c: Gpt2Config): Map<string, number[]> {
  const C = c.nEmbd;
  const F = mlpWidth(c);
  const shapes = new Map<string, number[]>([
    ['transformer.wte.weight', [c.vocabSize, C]],
    ['transformer.wpe.weight', [c.nPositions, C]],
  ]);
  for (let i = 0; i < c.nLayer; i++) {
    const h = `transformer.h.${i}`;
    shapes.set(`${h}.ln_1.weight`, [C]).set(`${h}.ln_1.bias`, [C]);
    shapes.set(`${h}.attn.c_attn.weight`, [C, 3 * C]).set(`${h}.attn.c_attn.bias`, [3 * C]);
    shapes.set(`${h}.attn.c_proj.weight`, [C, C]).set(`${h}.attn.c_proj.bias`, [C]);
    shapes.set(`${h}.ln_2.weight`, [C]).set(`${h}.ln_2.bias`, [C]);
    shapes.set(`${h}.mlp.c_fc.weight`, [C, F]).set(`${h}.mlp.c_fc.bias`, [F]);
    shapes.set(`${h}.mlp.c_proj.weight`, [F, C]).set(`${h}.mlp.c_proj.bias`, [C]);
  }
  shapes.set('transformer.ln_f.weight', [C]).set('transformer.ln_f.bias', [C]);
  return shapes;
}

/** The linear (Conv1D) modules of a GPT-2 by PEFT path, with their [in, out] sizes, in model order. */
export function linearModules(
  c: Gpt2Config,
): { name: string; inFeatures: number; outFeatures: number }[] {
  const out: { name: string; inFeatures: number; outFeatures: number }[] = [];
  for (const [name, shape] of gpt2WeightShapes(c)) {
    if (shape.length === 2 && name.startsWith('transformer.h.')) {
      out.push({
        name: name.slice(0, -'.weight'.length),
        inFeatures: shape[0]!,
        outFeatures: shape[1]!,
      });
    }
  }
  return out;
}

export class Gpt2Model implements CausalLM {
  readonly config: Gpt2Config;
  readonly modelConfig: ModelConfig<Gpt2Config>;
  readonly wte: tf.Variable<tf.Rank.R2>; // [V, C]
  /** wte with its LoRA adapters (PEFT's lora.Embedding); the head reads wte itself. */
  readonly tokenEmbedding: LoraEmbedding;
  readonly wpe: tf.Variable<tf.Rank.R2>; // [P, C]
  readonly blocks: Gpt2Block[];
  readonly lnF: LayerNorm;
  /** The hand-scheduled LoRA step on webgpu (scheduled.ts). */
  readonly scheduledStep: ScheduledStepRecipe = gpt2ScheduledStep(this);

  /** `weights` must hold every tensor of gpt2WeightShapes(config), checked by the loader. */
  constructor(config: Gpt2Config, weights: WeightMap, baseDtype: BaseDtype = 'f32') {
    this.config = config;
    this.modelConfig = gpt2ModelConfig(config);
    const serial = nextModelId++;
    const get = (name: string) => {
      const w = weights.get(name);
      if (!w) throw new Error(`GPT-2: weight ${name} is missing`);
      return w;
    };
    const variable = (name: string) => {
      const w = get(name);
      // tidy: the variable keeps the data, the tensor it was made from goes.
      return tf.tidy(() => tf.variable(tf.tensor(w.data, w.shape), false, `${name}#${serial}`));
    };
    const norm = (name: string): LayerNorm => ({
      gamma: variable(`${name}.weight`) as tf.Variable<tf.Rank.R1>,
      beta: variable(`${name}.bias`) as tf.Variable<tf.Rank.R1>,
    });
    const linear = (name: string) => {
      const w = get(`${name}.weight`);
      const b = get(`${name}.bias`);
      const weight = { values: w.data, shape: w.shape as [number, number] };
      const bias = tf.tensor1d(b.data);
      const layer = new LoraLinear({ name, weight, bias, fanInFanOut: true, baseDtype });
      bias.dispose();
      return layer;
    };
    this.wte = variable('transformer.wte.weight') as tf.Variable<tf.Rank.R2>;
    this.wpe = variable('transformer.wpe.weight') as tf.Variable<tf.Rank.R2>;
    this.tokenEmbedding = new LoraEmbedding('transformer.wte', this.wte, true);
    this.blocks = [];
    for (let i = 0; i < config.nLayer; i++) {
      const h = `transformer.h.${i}`;
      this.blocks.push({
        ln1: norm(`${h}.ln_1`),
        cAttn: linear(`${h}.attn.c_attn`),
        attnProj: linear(`${h}.attn.c_proj`),
        ln2: norm(`${h}.ln_2`),
        cFc: linear(`${h}.mlp.c_fc`),
        mlpProj: linear(`${h}.mlp.c_proj`),
      });
    }
    this.lnF = norm('transformer.ln_f');
  }

  /** Every linear layer (LoRA's possible targets), in model order. */
  linears(): LoraLinear[] {
    return this.blocks.flatMap((b) => [b.cAttn, b.attnProj, b.cFc, b.mlpProj]);
  }

  embeddings(): LoraEmbedding[] {
    return [this.tokenEmbedding];
  }

  /** CausalLM.namedWeights: packed linear weights left out. */
  namedWeights(): [string, tf.Variable][] {
    const out: [string, tf.Variable][] = [
      ['transformer.wte.weight', this.wte],
      ['transformer.wpe.weight', this.wpe],
    ];
    const norm = (name: string, n: LayerNorm) => {
      out.push([`${name}.weight`, n.gamma], [`${name}.bias`, n.beta]);
    };
    const linear = (l: LoraLinear) => {
      if (l.baseDtype === 'f32') out.push([`${l.name}.weight`, l.weight]);
      if (l.bias) out.push([`${l.name}.bias`, l.bias]);
    };
    this.blocks.forEach((b, i) => {
      const h = `transformer.h.${i}`;
      norm(`${h}.ln_1`, b.ln1);
      linear(b.cAttn);
      linear(b.attnProj);
      norm(`${h}.ln_2`, b.ln2);
      linear(b.cFc);
      linear(b.mlpProj);
    });
    norm('transformer.ln_f', this.lnF);
    return out;
  }

  /** The base weights' current values (merged adapters included), Hugging Face names. */
  async readWeights(): Promise<WeightMap> {
    return readNamedWeights(this.namedWeights());
  }

  /** From the config, so that it also counts a base stored in half precision. */
  parameterCount(): number {
    return countElements(gpt2WeightShapes(this.config).values());
  }

  /** ids [B, T] (int32) -> logits [B, T, V]. */
  forward(ids: tf.Tensor2D, options: Gpt2ForwardOptions = {}): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.hidden(ids, options); // [B, T, C]
      const [B, T, C] = h.shape;
      const logits = tf.matMul(h.reshape([B * T, C]), this.wte, false, true); // [B*T, V]
      return logits.reshape([B, T, this.config.vocabSize]) as tf.Tensor3D;
    });
  }

  /** hidden [N, C] -> logits [N, V], through the head tied to wte. */
  logits(hidden: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(hidden, this.wte, false, true);
  }

  headVariables(): tf.Variable[] {
    return [this.wte];
  }

  extend(pass: CachedPass): { last: tf.Tensor2D; layers: LayerKv[] } {
    return gpt2Extend(this, pass);
  }

  /** The final hidden states [B, T, C] (after ln_f). */
  hidden(ids: tf.Tensor2D, options: Gpt2ForwardOptions = {}): tf.Tensor3D {
    const c = this.config;
    const [B, T] = ids.shape;
    checkContext(T, options.positionIds, c.nPositions, 'n_positions');
    const training = options.training ?? false;
    const dropping = training && options.dropout !== false;
    const seeds = gpt2Seeds(c, options.seed ?? 0, dropping); // every mask's seed
    const packed = options.positionIds;
    return tf.tidy(() => {
      // [T], or packed documents' own positions [B, T]
      const positions = packed ? tf.tensor2d(packed, [B, T], 'int32') : tf.range(0, T, 1, 'int32');
      let tokens = this.tokenEmbedding
        .lookup(ids.flatten())
        .reshape([B, T, c.nEmbd]) as tf.Tensor3D;
      if (training && options.neftuneAlpha)
        tokens = neftuneNoise(tokens, options.neftuneAlpha, options.seed ?? 0);
      let x = tf.add(tokens, tf.gather(this.wpe, positions)); // [B, T, C]
      x = drop(x, c.embdPdrop, seeds.embd);
      const mask = causalMask(T); // [T, T]: 0 where allowed, -1e9 where not
      // Packed documents attend within each (packed-documents.ts), the mask unused.
      const documents = packed ? documentLayout(packed, B, T) : null;
      const recompute = training && options.gradientCheckpointing === true;
      for (const [i, block] of this.blocks.entries()) {
        const run = (h: tf.Tensor, [m]: readonly tf.Tensor[]) =>
          this.block(block, h, m as tf.Tensor2D, documents, dropping, seeds.blocks[i]!);
        x = recompute ? checkpoint(run, x, [mask], blockVariables(block)) : run(x, [mask]);
      }
      return layerNorm(x, this.lnF, c.layerNormEpsilon) as tf.Tensor3D;
    });
  }

  /** One block: x [B, T, C] -> x + attention + MLP, each branch after its LayerNorm. */
  private block(
    block: Gpt2Block,
    x: tf.Tensor,
    mask: tf.Tensor2D,
    documents: DocumentLayout | null,
    training: boolean,
    s: Gpt2BlockSeeds,
  ): tf.Tensor {
    const c = this.config;
    const h = layerNorm(x, block.ln1, c.layerNormEpsilon);
    const a = this.attention(block, h, { mask, documents }, training, s);
    // Residual adds that keep nothing for backward (core's shape-only ops).
    const mid = addSame(x, drop(a, c.residPdrop, s.attnResid));
    const m = this.mlp(block, layerNorm(mid, block.ln2, c.layerNormEpsilon), training, s.mlp);
    return addSame(mid, drop(m, c.residPdrop, s.mlpResid));
  }

  dispose(): void {
    // Not through namedWeights(): a linear layer's W may be stored packed (--base-dtype).
    const norms = [this.lnF, ...this.blocks.flatMap((b) => [b.ln1, b.ln2])];
    this.tokenEmbedding.dispose();
    tf.dispose([this.wte, this.wpe, ...norms.flatMap((n) => [n.gamma, n.beta])]);
    for (const l of this.linears()) l.dispose();
  }

  private attention(
    block: Gpt2Block,
    x: tf.Tensor, // [B, T, C]
    { mask, documents }: { mask: tf.Tensor2D; documents: DocumentLayout | null },
    training: boolean,
    seeds: Gpt2BlockSeeds,
  ): tf.Tensor {
    const [B, T, C] = x.shape as [number, number, number];
    const H = this.config.nHead;
    const D = C / H;
    const seed = seeds.attn;
    const qkv = block.cAttn.forward(x, { training, dropoutSeed: seed * 4 }); // [B, T, 3C]
    const parts = tf.split(qkv, 3, 2) as tf.Tensor3D[]; // q, k, v [B, T, C]
    // softmax(q k^T / sqrt(D) + mask) v: without [B, H, T, T] on webgpu, dropout included.
    const rate = this.config.attnPdrop;
    const dropout = seeds.probs === null ? undefined : { rate, seed: seeds.probs };
    const scale = 1 / Math.sqrt(D);
    if (documents) {
      const [q, k, v] = parts;
      const y = documentAttention(q!, k!, v!, H, documents, { scale, dropout }); // [B, T, C]
      return block.attnProj.forward(y, { training, dropoutSeed: seed * 4 + 1 });
    }
    const [q, k, v] = parts.map((t) => reshapeTo(t, [B, T, H, D]).transpose([0, 2, 1, 3])); // [B, H, T, D]
    const heads = causalAttention(q!, k!, v!, { scale, mask, dropout }); // [B, H, T, D]
    const y = reshapeTo(heads.transpose([0, 2, 1, 3]), [B, T, C]); // [B, T, C]
    return block.attnProj.forward(y, { training, dropoutSeed: seed * 4 + 1 });
  }

  private mlp(block: Gpt2Block, x: tf.Tensor, training: boolean, seed: number): tf.Tensor {
    const hidden = block.cFc.forward(x, { training, dropoutSeed: seed * 4 + 2 }); // [B, T, 4C]
    return block.mlpProj.forward(geluNew(hidden), { training, dropoutSeed: seed * 4 + 3 });
  }
}

let nextModelId = 0;

/** Dropout of rate p where the config has it (a seed), else x itself. */
function drop(x: tf.Tensor, p: number, seed: number | null): tf.Tensor {
  return seed === null ? x : seededDropout(x, p, seed);
}

/** Every variable a block reads (core's checkpoint differentiates the trainable ones). */
function blockVariables(b: Gpt2Block): tf.Variable[] {
  const norms = [b.ln1, b.ln2].flatMap((n) => [n.gamma, n.beta]);
  return [...norms, ...[b.cAttn, b.attnProj, b.cFc, b.mlpProj].flatMap((l) => l.variables())];
}

/** Biased variance, as torch.nn.LayerNorm (fused on cpu and wasm: core's layerNorm). */
export function layerNorm(x: tf.Tensor, n: LayerNorm, eps: number): tf.Tensor {
  return coreLayerNorm(x, n.gamma, n.beta, eps);
}

/** GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (fused on cpu and wasm). */
export function geluNew(x: tf.Tensor): tf.Tensor {
  return coreGeluNew(x);
}

/** [T, T]: 0 on and below the diagonal, a large negative number above it. */
export function causalMask(T: number): tf.Tensor2D {
  return tf.tidy(() => {
    const rows = tf.range(0, T, 1, 'int32').reshape([T, 1]);
    const cols = tf.range(0, T, 1, 'int32').reshape([1, T]);
    return tf.mul(tf.cast(tf.greater(cols, rows), 'float32'), -1e9) as tf.Tensor2D;
  });
}
