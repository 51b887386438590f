import { matrix, savePeftAdapter, truncatedSvd } from '@lorafleet/core';
import {
  type WeightMap,
  type LinearModule,
  familyOf,
  modelLinearModules,
  readModelConfig,
  readModelWeights,
  savedTargets,
  selectTargets,
} from '@lorafleet/models';
import { type CommandValues, defineCommand, UsageError } from '../args.js';
import { checkOutDir, describeFsError } from '../out-dir.js';

export const extractSpec = defineCommand({
  name: 'extract',
  summary:
    "Approximate a full fine-tune (tuned - base) by a LoRA adapter of rank R: a truncated SVD per module. Prints the share of each delta's energy (squared Frobenius norm) the adapter keeps, and every other tensor the fine-tune changed (biases, norms, embeddings, untargeted weights), which the adapter does not carry.",
  options: {
    base: { kind: 'string', value: 'DIR', required: true, description: 'the base model folder' },
    tuned: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'the fully fine-tuned model folder (same architecture)',
    },
    rank: {
      aliases: ['r'],
      kind: 'int',
      min: 1,
      required: true,
      description: 'LoRA rank r of the extracted adapter',
    },
    out: {
      aliases: ['output_dir'],
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'folder for the PEFT adapter',
    },
    target: {
      kind: 'list',
      value: 'NAMES',
      default: ['all-linear'],
      description:
        'modules to extract, PEFT-style names (GPT-2: c_attn, c_proj, c_fc; Llama family: q_proj ... down_proj; Phi-3: qkv_proj ... down_proj) or all-linear, every linear layer of the model family',
    },
    json: { kind: 'boolean', description: 'print the per-module report as JSON' },
  },
});

export interface ExtractedModule {
  module: string;
  shape: [number, number];
  energyKept: number;
  deltaNorm: number;
}

/** A tensor that differs between base and tuned but that the adapter does not carry. */
export interface UncarriedChange {
  name: string;
  kind: 'bias' | 'norm' | 'embedding' | 'weight';
  shape: number[];
  maxAbsChange: number;
}

type AdapterModule = {
  a: Float32Array;
  b: Float32Array;
  r: number;
  inFeatures: number;
  outFeatures: number;
};

/** LoRA's delta is [out, in]; Conv1D weights (fanInFanOut) are stored [in, out], nn.Linear's [out, in]. */
function deltaOutIn(
  base: WeightMap,
  tuned: WeightMap,
  layer: LinearModule,
): { data: Float64Array; out: number; inF: number } {
  const name = `${layer.name}.weight`;
  const b = base.get(name)!;
  const t = tuned.get(name)!;
  const [inF, out] = [layer.inFeatures, layer.outFeatures];
  const data = new Float64Array(out * inF);
  for (let i = 0; i < inF; i++) {
    for (let j = 0; j < out; j++) {
      const at = layer.fanInFanOut ? i * out + j : j * inF + i;
      data[j * inF + i] = t.data[at]! - b.data[at]!;
    }
  }
  return { data, out, inF };
}

export async function runExtract(o: CommandValues<typeof extractSpec>): Promise<void> {
  const [baseDir, tunedDir] = [o.base, o.tuned];
  await checkOutDir(o.out, {
    flag: '--out',
    mustBeEmpty: false,
    inputs: [
      { flag: '--base', path: baseDir, holds: 'the base model' },
      { flag: '--tuned', path: tunedDir, holds: 'the tuned model' },
    ],
  });
  const { config, base, tuned } = await readPair(baseDir, tunedDir);
  const layers = selectTargets(modelLinearModules(config), o.target);
  const rank = o.rank;
  const modules = new Map<string, AdapterModule>();
  const report: ExtractedModule[] = [];
  for (const layer of layers) {
    const { module, row } = extractModule(base, tuned, layer, rank);
    modules.set(layer.name, module);
    report.push(row);
  }
  const carried = new Set(layers.map((l) => `${l.name}.weight`));
  const uncarried = uncarriedChanges(base, tuned, carried);
  try {
    await savePeftAdapter(o.out, {
      config: {
        r: rank,
        loraAlpha: rank,
        loraDropout: 0,
        targetModules: savedTargets(o.target, layers, familyOf(config).targetScope),
        fanInFanOut: layers[0]!.fanInFanOut,
        useRslora: false,
        bias: 'none',
        initLoraWeights: true,
        baseModelNameOrPath: baseDir,
        taskType: 'CAUSAL_LM',
      },
      modules,
    });
  } catch (err) {
    throw describeFsError(err, 'cannot write the adapter to --out', o.out);
  }
  if (o.json) {
    const json = { rank, out: o.out, modules: report, uncarried };
    console.log(JSON.stringify(json, null, 2));
    return;
  }
  console.log(`extracted a rank-${rank} adapter from ${tunedDir} - ${baseDir} into ${o.out}`);
  printModules(report);
  printUncarried(uncarried);
}

/** Both models' weights, refused unless their architectures are the same. */
async function readPair(baseDir: string, tunedDir: string) {
  const config = await readModelConfig(baseDir);
  const tunedConfig = await readModelConfig(tunedDir);
  if (JSON.stringify(config) !== JSON.stringify(tunedConfig)) {
    throw new UsageError(
      `extract: ${baseDir} and ${tunedDir} have different architectures (config.json differs)`,
    );
  }
  const base = await readModelWeights(baseDir, config);
  const tuned = await readModelWeights(tunedDir, config);
  return { config, base, tuned };
}

/** The rank-r truncated SVD of one module's delta as LoRA factors, and its report row. */
function extractModule(
  base: WeightMap,
  tuned: WeightMap,
  layer: LinearModule,
  rank: number,
): { module: AdapterModule; row: ExtractedModule } {
  const name = layer.name;
  const { data, out, inF } = deltaOutIn(base, tuned, layer);
  if (rank > Math.min(out, inF))
    throw new UsageError(
      `extract: rank ${rank} exceeds ${name}'s min(out, in) = ${Math.min(out, inF)}`,
    );
  const delta = matrix(out, inF, data); // [out, in]
  const { u, s, v } = truncatedSvd(delta, rank, { powerIterations: 4 });
  // B = U sqrt(S) [out, r], A = sqrt(S) V^T [r, in], alpha = r so that scaling = 1.
  const a = new Float32Array(rank * inF);
  const b = new Float32Array(out * rank);
  for (let k = 0; k < rank; k++) {
    const root = Math.sqrt(s[k]!);
    for (let j = 0; j < inF; j++) a[k * inF + j] = root * v.data[j * rank + k]!;
    for (let i = 0; i < out; i++) b[i * rank + k] = u.data[i * rank + k]! * root;
  }
  // Energy kept = sum of the top-r squared singular values over ||delta||_F^2.
  let norm2 = 0;
  for (const x of data) norm2 += x * x;
  let kept = 0;
  for (const x of s) kept += x * x;
  return {
    module: { a, b, r: rank, inFeatures: inF, outFeatures: out },
    row: {
      module: name,
      shape: [out, inF],
      energyKept: norm2 > 0 ? kept / norm2 : 1,
      deltaNorm: Math.sqrt(norm2),
    },
  };
}

/**
 * Every tensor other than the extracted weights that the fine-tune changed:
 * biases, layer norms, embeddings, and linear weights outside --target. A LoRA
 * adapter carries none of them, so applying it cannot reproduce those changes.
 */
export function uncarriedChanges(
  base: WeightMap,
  tuned: WeightMap,
  carried: ReadonlySet<string>,
): UncarriedChange[] {
  const changes: UncarriedChange[] = [];
  for (const [name, b] of base) {
    if (carried.has(name)) continue;
    const t = tuned.get(name)!.data;
    let maxAbsChange = 0;
    b.data.forEach((x, i) => (maxAbsChange = Math.max(maxAbsChange, Math.abs(t[i]! - x))));
    if (maxAbsChange > 0)
      changes.push({ name, kind: kindOf(name), shape: [...b.shape], maxAbsChange });
  }
  return changes;
}

/**
 * By the families' names: GPT-2's ln_1, ln_2, ln_f and Llama's *_layernorm and
 * norm are norms; wte, wpe and embed_tokens embeddings; the rest weights or biases.
 */
function kindOf(name: string): UncarriedChange['kind'] {
  if (/(^|\.)(ln_(\d+|f)|norm|\w*layernorm)\./.test(name)) return 'norm';
  if (/(^|\.)(wte|wpe|embed_tokens)\./.test(name)) return 'embedding';
  return name.endsWith('.bias') ? 'bias' : 'weight';
}

function printModules(report: readonly ExtractedModule[]): void {
  console.log(
    `${'module'.padEnd(36)} ${'[out, in]'.padEnd(12)} ${'||delta||'.padStart(10)}  energy kept`,
  );
  for (const m of report) {
    console.log(
      `${m.module.padEnd(36)} ${`[${m.shape.join(', ')}]`.padEnd(12)} ${m.deltaNorm.toExponential(3).padStart(10)}  ${(100 * m.energyKept).toFixed(2)}%`,
    );
  }
}

function printUncarried(changes: readonly UncarriedChange[]): void {
  if (changes.length === 0) {
    console.log('no other tensor changed: the adapter stands for the whole fine-tune');
    return;
  }
  console.log(
    `\nchanged, but NOT in the adapter (${changes.length} tensor(s); LoRA carries only the --target weights):`,
  );
  console.log(`${'tensor'.padEnd(40)} ${'kind'.padEnd(10)} ${'max |change|'.padStart(12)}`);
  for (const c of changes) {
    console.log(
      `${c.name.padEnd(40)} ${c.kind.padEnd(10)} ${c.maxAbsChange.toExponential(3).padStart(12)}`,
    );
  }
}
