// A checkpoint's optimizer.safetensors: the run's optimizer state as F32
// tensors named `<slot>.<state>` with torch's state names and shapes
// (AdamW: exp_avg, exp_avg_sq; SGD: momentum_buffer; Adafactor:
// exp_avg_sq_row, exp_avg_sq_col, ...), its metadata the optimizer
// ("lorafleet-<kind>") and its own step count.
import {
  type OptimizerSettings,
  type OptimizerState,
  type TrainableParameters,
  float32Entry,
  parseSafetensors,
  stateBuffers,
  toFloat32,
} from '@lorafleet/core';
import { CheckpointError } from './checkpoint-manifest.js';

const formatOf = (settings: OptimizerSettings) => `lorafleet-${settings.kind}`;

/** The tensors and metadata of optimizer.safetensors for `state`. */
export function optimizerTensors(
  params: TrainableParameters,
  settings: OptimizerSettings,
  state: OptimizerState,
) {
  const tensors = new Map<string, ReturnType<typeof float32Entry>>();
  for (const buffer of stateBuffers(settings, params.layout)) {
    params.slots.forEach((slot, k) => {
      const { offset, shape } = buffer.slots[k]!;
      if (!shape) return;
      const length = shape.reduce((a, b) => a * b, 1);
      const values = state.buffers[buffer.name]!.subarray(offset, offset + length);
      tensors.set(`${slot.name}.${buffer.name}`, float32Entry(values, [...shape]));
    });
  }
  return { tensors, metadata: { format: formatOf(settings), step: String(state.step) } };
}

/**
 * The optimizer state in optimizer.safetensors' `bytes`, fused in `params`'
 * slot order; refused when it is another optimizer's or another model's, or
 * counts more steps than the checkpoint's `trainerStep`.
 */
export function optimizerStateFrom(
  bytes: Uint8Array,
  path: string,
  params: TrainableParameters,
  settings: OptimizerSettings,
  trainerStep: number,
): OptimizerState {
  const file = parseSafetensors(bytes, path);
  const format = file.metadata.format ?? '';
  if (format !== formatOf(settings)) {
    const held = format.replace(/^lorafleet-/, '');
    throw new CheckpointError(
      `${path}: holds ${held || 'an unknown'} optimizer's state; this run trains with ${settings.kind} ` +
        `(resume with the optimizer the run began with, or start a new run from its adapter with --init-adapter)`,
    );
  }
  const buffers: Record<string, Float32Array> = {};
  for (const buffer of stateBuffers(settings, params.layout)) {
    const into = (buffers[buffer.name] = new Float32Array(buffer.length));
    params.slots.forEach((slot, k) => {
      const { offset, shape } = buffer.slots[k]!;
      if (!shape) return;
      const name = `${slot.name}.${buffer.name}`;
      const entry = file.tensors.get(name);
      if (!entry)
        throw new CheckpointError(`${path}: no tensor "${name}"; is it for another model?`);
      if (entry.shape.join() !== shape.join())
        throw new CheckpointError(
          `${path}: "${name}" is [${entry.shape.join(', ')}], the model's is [${shape.join(', ')}]`,
        );
      into.set(toFloat32(entry, name, path), offset);
    });
  }
  // The optimizer's own count: a step skipped for a non-finite gradient does not advance it.
  const step = Number(file.metadata.step);
  if (!Number.isInteger(step) || step < 0 || step > trainerStep)
    throw new CheckpointError(
      `${path}: optimizer step "${file.metadata.step}" is not in [0, ${trainerStep}]`,
    );
  return { step, buffers };
}
