import { tf } from '@lorafleet/core';
import { type WeightMap, writeModelFolder } from '@lorafleet/models';
import { type CommandValues, defineCommand } from '../args.js';
import { backendOption, copyTokenizerFiles, loadModelAndAdapter, startBackend } from '../common.js';
import { checkOutDir, describeFsError } from '../out-dir.js';

/** Default largest |merged - unmerged| logit, relative to the largest |logit| (at least 1). */
export const MERGE_TOLERANCE = 1e-3;

export const mergeSpec = defineCommand({
  name: 'merge',
  summary:
    'Merge a LoRA adapter into its base model (W + scaling * B A) and save a plain model folder: no adapter, no extra latency. The folder loads in this project and in Hugging Face transformers.',
  options: {
    model: {
      aliases: ['base_model_name_or_path'],
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'base model folder',
    },
    adapter: { kind: 'string', value: 'DIR', required: true, description: 'PEFT adapter folder' },
    out: {
      aliases: ['output_dir'],
      kind: 'string',
      value: 'DIR',
      required: true,
      description:
        'folder for the merged model: new or empty, never --model or --adapter nor inside them',
    },
    overwrite: {
      kind: 'boolean',
      description: 'write into a --out folder that already holds files (never --model itself)',
    },
    dtype: {
      aliases: ['torch_dtype'],
      kind: 'string',
      choices: ['F32', 'F16', 'BF16'],
      default: 'F32',
      description: 'tensor type of the saved weights',
    },
    tolerance: {
      kind: 'number',
      min: 0,
      default: MERGE_TOLERANCE,
      description:
        'the check fails (exit 1, nothing written) when a logit of the merged model differs from the unmerged one by more than this times the largest |logit| (at least 1), or any weight or logit is NaN or infinite',
    },
    check: {
      kind: 'boolean',
      default: true,
      description: 'compare merged and unmerged logits on a probe before saving (--no-check skips)',
    },
    backend: backendOption,
  },
});

/** Why a merged model must not be saved, or undefined when it may. */
function mergeProblem(gap: number, scale: number, tolerance: number): string | undefined {
  if (!Number.isFinite(gap) || !Number.isFinite(scale)) {
    return 'the logits are NaN or infinite (a diverged adapter?)';
  }
  const allowed = tolerance * Math.max(1, scale);
  if (gap > allowed) {
    return `merged and unmerged logits differ by ${gap.toExponential(2)}, more than the tolerance ${allowed.toExponential(2)} (--tolerance ${tolerance} x largest |logit| ${scale.toExponential(2)})`;
  }
  return undefined;
}

/** The first weight holding a NaN or infinity, if any. */
function nonFiniteWeight(weights: WeightMap): string | undefined {
  for (const [name, w] of weights) {
    if (!w.data.every(Number.isFinite)) return name;
  }
  return undefined;
}

export async function runMerge(o: CommandValues<typeof mergeSpec>): Promise<void> {
  const modelDir = o.model;
  const adapterDir = o.adapter;
  const out = o.out;
  await checkOutDir(out, {
    flag: '--out',
    mustBeEmpty: !o.overwrite,
    overwriteHint: 'pass --overwrite to write into it',
    inputs: [
      { flag: '--model', path: modelDir, holds: 'the base weights' },
      { flag: '--adapter', path: adapterDir, holds: 'the adapter' },
    ],
  });
  await startBackend(o);
  // f32 W to merge into (a bitsandbytes 4-bit folder's dequantized).
  const { model, config, adapted } = await loadModelAndAdapter(modelDir, adapterDir, 'f32');
  // A probe sequence shows that merging changed nothing the model computes.
  const T = Math.min(32, config.contextLength);
  const probe = tf.tensor2d(
    Int32Array.from({ length: T }, (_, i) => (i * 31 + 7) % config.vocabSize),
    [1, T],
    'int32',
  );
  const before = model.forward(probe);
  const layers = model.linears().filter((l) => l.activeAdapter);
  for (const layer of layers) layer.merge();
  for (const e of model.embeddings().filter((x) => x.activeAdapter)) {
    if (e.tiedToHead) {
      throw new Error(
        `the adapter has LoRA on ${e.name}, which the output head shares (tie_word_embeddings): merged, it would change ` +
          'the head too, which the unmerged adapter does not; use it unmerged (eval/generate --adapter); nothing was written',
      );
    }
    e.merge();
  }
  const after = model.forward(probe);
  // Asynchronous reads: the only kind a GPU backend (webgpu under Node) allows.
  const measured = tf.tidy(() =>
    tf.stack([tf.max(tf.abs(tf.sub(before, after))), tf.max(tf.abs(before))]),
  );
  const [gap, scale] = [...((await measured.data()) as Float32Array)] as [number, number];
  tf.dispose([probe, before, after, measured]);
  const weights = await model.readWeights();
  model.dispose();
  const badWeight = nonFiniteWeight(weights);
  if (badWeight) {
    throw new Error(
      `the merged weight ${badWeight} holds NaN or infinite values: the adapter ${adapterDir} is not usable (a diverged run?); nothing was written`,
    );
  }
  const problem = o.check ? mergeProblem(gap, scale, o.tolerance) : undefined;
  if (problem) throw new Error(`the merge check failed: ${problem}; nothing was written`);
  try {
    await writeModelFolder(out, config, weights, { dtype: o.dtype, sourceDir: modelDir });
    await copyTokenizerFiles(modelDir, out);
  } catch (err) {
    throw describeFsError(err, 'cannot write the merged model to --out', out);
  }
  const checked = o.check
    ? `logits on a ${T}-token probe differ by at most ${gap.toExponential(2)} from the unmerged model`
    : 'not checked (--no-check)';
  console.log(`merged ${adapted} adapted modules into ${out}; ${checked}`);
}
