import { matrix, savePeftAdapter, truncatedSvd } from '@lorafleet/core';
import {
  type WeightMap,
  type LinearModule,
  modelLinearModules,
  readModelConfig,
  readModelWeights,
  savedTargetModules,
  selectTargets,
} from '@lorafleet/models';
import { type CommandValues, defineCommand, UsageError } from '../args.js';

export const extractSpec = defineCommand({
  name: 'extract',
  summary:
    "Approximate a full fine-tune (tuned - base) by a LoRA adapter of rank R: a truncated SVD per module. Prints the share of each delta's energy (squared Frobenius norm) the adapter keeps.",
  options: {
    base: { kind: 'string', value: 'DIR', required: true, description: 'the base model folder' },
    tuned: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'the fully fine-tuned model folder (same architecture)',
    },
    rank: {
      kind: 'int',
      min: 1,
      required: true,
      description: 'LoRA rank r of the extracted adapter',
    },
    out: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'folder for the PEFT adapter',
    },
    target: {
      kind: 'list',
      value: 'NAMES',
      default: ['c_attn', 'c_proj', 'c_fc'],
      description:
        'modules to extract, PEFT-style names (Llama family: e.g. q_proj,k_proj,v_proj,o_proj)',
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
  const config = await readModelConfig(baseDir);
  const tunedConfig = await readModelConfig(tunedDir);
  if (JSON.stringify(config) !== JSON.stringify(tunedConfig)) {
    throw new UsageError(
      `extract: ${baseDir} and ${tunedDir} have different architectures (config.json differs)`,
    );
  }
  const [base, tuned] = [
    await readModelWeights(baseDir, config),
    await readModelWeights(tunedDir, config),
  ];
  const layers = selectTargets(modelLinearModules(config), o.target);
  const rank = o.rank;
  const modules = new Map<
    string,
    { a: Float32Array; b: Float32Array; r: number; inFeatures: number; outFeatures: number }
  >();
  const report: ExtractedModule[] = [];
  for (const layer of layers) {
    const { data, out, inF } = deltaOutIn(base, tuned, layer);
    if (rank > Math.min(out, inF))
      throw new UsageError(
        `extract: rank ${rank} exceeds ${layer.name}'s min(out, in) = ${Math.min(out, inF)}`,
      );
    const delta = matrix(out, inF, data);
    const { u, s, v } = truncatedSvd(delta, rank, { powerIterations: 4 });
    // B = U sqrt(S), A = sqrt(S) V^T, alpha = r so that scaling = 1.
    const a = new Float32Array(rank * inF);
    const b = new Float32Array(out * rank);
    for (let k = 0; k < rank; k++) {
      const root = Math.sqrt(s[k]!);
      for (let j = 0; j < inF; j++) a[k * inF + j] = root * v.data[j * rank + k]!;
      for (let i = 0; i < out; i++) b[i * rank + k] = u.data[i * rank + k]! * root;
    }
    modules.set(layer.name, { a, b, r: rank, inFeatures: inF, outFeatures: out });
    // Energy kept = sum of the top-r squared singular values over ||delta||_F^2.
    let norm2 = 0;
    for (const x of data) norm2 += x * x;
    let kept = 0;
    for (const x of s) kept += x * x;
    report.push({
      module: layer.name,
      shape: [out, inF],
      energyKept: norm2 > 0 ? kept / norm2 : 1,
      deltaNorm: Math.sqrt(norm2),
    });
  }
  const targets = savedTargetModules(o.target, layers);
  await savePeftAdapter(o.out, {
    config: {
      r: rank,
      loraAlpha: rank,
      loraDropout: 0,
      targetModules: targets,
      fanInFanOut: layers[0]!.fanInFanOut,
      useRslora: false,
      bias: 'none',
      initLoraWeights: true,
      baseModelNameOrPath: baseDir,
      taskType: 'CAUSAL_LM',
    },
    modules,
  });
  if (o.json) {
    console.log(JSON.stringify({ rank, out: o.out, modules: report }, null, 2));
    return;
  }
  console.log(`extracted a rank-${rank} adapter from ${tunedDir} - ${baseDir} into ${o.out}`);
  console.log(
    `${'module'.padEnd(36)} ${'[out, in]'.padEnd(12)} ${'||delta||'.padStart(10)}  energy kept`,
  );
  for (const m of report) {
    console.log(
      `${m.module.padEnd(36)} ${`[${m.shape.join(', ')}]`.padEnd(12)} ${m.deltaNorm.toExponential(3).padStart(10)}  ${(100 * m.energyKept).toFixed(2)}%`,
    );
  }
}
