import {
  type PeftAdapter,
  effectiveRank,
  loadPeftAdapter,
  matrix,
  moduleAlpha,
  moduleRank,
  subspaceSimilarity,
  svd,
  updateSvd,
} from '@lorafleet/core';
import { type CommandValues, defineCommand, UsageError } from '../args.js';
import { formatCount } from '../common.js';

export const inspectSpec = defineCommand({
  name: 'inspect',
  summary:
    'Describe a LoRA adapter per module: shape, rank, parameters, the norm and singular values of its update scaling * B A, and the effective rank. With --compare, the subspace similarity of two adapters (LoRA paper, section 7).',
  options: {
    adapter: { kind: 'string', value: 'DIR', required: true, description: 'PEFT adapter folder' },
    compare: {
      kind: 'string',
      value: 'DIR2',
      description: 'a second adapter over the same modules',
    },
    json: { kind: 'boolean', description: 'machine-readable output' },
  },
});

export interface ModuleReport {
  module: string;
  shape: [number, number];
  r: number;
  parameters: number;
  scaling: number;
  updateNorm: number;
  singularValues: number[];
  effectiveRank: number;
}

export interface Comparison {
  module: string;
  /** phi(i, j) on A's right singular vectors (input space), for i = j = 1 and i = j = min(r1, r2). */
  inputTop1: number;
  inputAll: number;
  /** The same on B's left singular vectors (output space). */
  outputTop1: number;
  outputAll: number;
}

function scalingOf(adapter: PeftAdapter, module: string): number {
  const r = moduleRank(adapter.config, module);
  const alpha = moduleAlpha(adapter.config, module);
  return adapter.config.useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** Every LoRA module: linears, then embeddings (lora_embedding_A/B: the update's transpose, same singular values). */
export function describeAdapter(adapter: PeftAdapter): ModuleReport[] {
  return [...adapter.modules, ...(adapter.embeddings ?? [])].map(([module, w]) => {
    const scaling = scalingOf(adapter, module);
    const { s } = updateSvd(w.a, w.b, w, scaling);
    let norm2 = 0;
    for (const x of s) norm2 += x * x;
    return {
      module,
      shape: [w.outFeatures, w.inFeatures],
      r: w.r,
      parameters: w.a.length + w.b.length + (w.magnitude?.length ?? 0),
      scaling,
      updateNorm: Math.sqrt(norm2),
      singularValues: [...s],
      effectiveRank: effectiveRank(s),
    };
  });
}

/** Orthonormal bases of A's row space ([in, r]) and B's column space ([out, r]). */
function bases(w: {
  a: Float32Array;
  b: Float32Array;
  r: number;
  inFeatures: number;
  outFeatures: number;
}) {
  const aT = matrix(w.inFeatures, w.r);
  for (let k = 0; k < w.r; k++)
    for (let j = 0; j < w.inFeatures; j++) aT.data[j * w.r + k] = w.a[k * w.inFeatures + j]!;
  return { input: svd(aT).u, output: svd(matrix(w.outFeatures, w.r, w.b)).u };
}

export function compareAdapters(x: PeftAdapter, y: PeftAdapter): Comparison[] {
  const shared = [...x.modules.keys()].filter((m) => y.modules.has(m));
  if (shared.length === 0) throw new UsageError('inspect: the two adapters share no module');
  return shared.map((module) => {
    const [wx, wy] = [x.modules.get(module)!, y.modules.get(module)!];
    if (wx.inFeatures !== wy.inFeatures || wx.outFeatures !== wy.outFeatures) {
      throw new UsageError(`inspect: ${module} has different shapes in the two adapters`);
    }
    const [bx, by] = [bases(wx), bases(wy)];
    const k = Math.min(wx.r, wy.r);
    return {
      module,
      inputTop1: subspaceSimilarity(bx.input, by.input, 1, 1),
      inputAll: subspaceSimilarity(bx.input, by.input, k, k),
      outputTop1: subspaceSimilarity(bx.output, by.output, 1, 1),
      outputAll: subspaceSimilarity(bx.output, by.output, k, k),
    };
  });
}

export async function runInspect(o: CommandValues<typeof inspectSpec>): Promise<void> {
  const dir = o.adapter;
  const adapter = await loadPeftAdapter(dir);
  const modules = describeAdapter(adapter);
  const other = o.compare;
  const comparison = other ? compareAdapters(adapter, await loadPeftAdapter(other)) : undefined;
  if (o.json) {
    console.log(
      JSON.stringify({ adapter: dir, config: adapter.config, modules, comparison }, null, 2),
    );
    return;
  }
  const c = adapter.config;
  const total = modules.reduce((n, m) => n + m.parameters, 0);
  console.log(
    `${dir}: LoRA r=${c.r}, alpha=${c.loraAlpha}${c.useRslora ? ' (rsLoRA)' : ''}${c.useDora ? ', DoRA (||dW|| below: the low-rank direction update s B A; the magnitudes rescale each row)' : ''}, targets ${[c.targetModules].flat().join(', ')}, ` +
      `${modules.length} modules, ${formatCount(total)} parameters`,
  );
  const whole = [...(adapter.tensors ?? [])];
  if (whole.length > 0) {
    const size = whole.reduce((n, [, t]) => n + t.data.length, 0);
    console.log(
      `plus ${whole.length} tensors trained in full (bias "${c.bias}", modules_to_save ${JSON.stringify(c.modulesToSave ?? [])}): ` +
        `${formatCount(size)} parameters`,
    );
  }
  console.log(
    `${'module'.padEnd(36)} ${'[out, in]'.padEnd(12)} ${'r'.padStart(3)} ${'||dW||'.padStart(10)} ${'eff.rank'.padStart(8)}  top singular values`,
  );
  for (const m of modules) {
    const top = m.singularValues
      .slice(0, 4)
      .map((s) => s.toExponential(2))
      .join(' ');
    console.log(
      `${m.module.padEnd(36)} ${`[${m.shape.join(', ')}]`.padEnd(12)} ${String(m.r).padStart(3)} ${m.updateNorm.toExponential(3).padStart(10)} ${m.effectiveRank.toFixed(2).padStart(8)}  ${top}`,
    );
  }
  if (comparison) {
    console.log(`\nsubspace similarity with ${other} (1 = same subspace, 0 = orthogonal):`);
    console.log(
      `${'module'.padEnd(36)} ${'A top-1'.padStart(8)} ${'A all'.padStart(8)} ${'B top-1'.padStart(8)} ${'B all'.padStart(8)}`,
    );
    for (const s of comparison) {
      const f = (x: number) => x.toFixed(3).padStart(8);
      console.log(
        `${s.module.padEnd(36)} ${f(s.inputTop1)} ${f(s.inputAll)} ${f(s.outputTop1)} ${f(s.outputAll)}`,
      );
    }
  }
}
