// The micro-batch of a run on the wasm backend, from the memory estimate of
// @lorafleet/models: picked to fit the 4 GiB heap when --micro-batch-size is
// not given, refused up front (with the estimate and the fix) when it is.
import type { BackendName } from '@lorafleet/core';
import {
  type EstimateConfig,
  type WeightsEstimate,
  ACTIVATION_SHARE,
  WASM_HEAP_BYTES,
  activationBytes,
  largestMicroBatch,
  longestRow,
  parameterBytes,
  wasmActivationBudget,
} from '@lorafleet/models';
import { UsageError } from '../args.js';

/** The weights (their optimizer state too, when fully fine-tuned; linear W as --base-dtype). */
export interface MicroBatchMemory extends WeightsEstimate {
  config: EstimateConfig;
  seqLen: number;
  backend: BackendName;
  /** --gradient-checkpointing: one layer's intermediates at a time. */
  gradientCheckpointing?: boolean;
  /** 2 for a preference objective or KTO: a row is two sequences of seqLen (a pair; an example and its KL sequence); absent: 1. */
  sequencesPerRow?: 1 | 2;
  /** Rows pack documents apart (--packing-strategy bfd): the longest document's tokens, rounded up to 8 (worker documentSpan). */
  documentSpan?: number;
}

/** "600 x 32 tokens", or a preference or KTO run's "600 rows of 2 x 32 tokens". */
const rowsText = (rows: number, memory: MicroBatchMemory) =>
  memory.sequencesPerRow === 2
    ? `${rows} rows of 2 x ${memory.seqLen} tokens`
    : `${rows} x ${memory.seqLen} tokens`;

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

/** The warning for a row that alone needs more than the heap leaves (a big model, a long --seq-len). */
function tooLongRow(memory: MicroBatchMemory, budget: number): string {
  const { config, seqLen } = memory;
  const k = memory.sequencesPerRow ?? 1;
  const checkpointed = memory.gradientCheckpointing === true;
  const rowsFitting = (room: number, ckpt: boolean) =>
    room > 0 ? longestRow(config, seqLen, room / k, ckpt) : 0;
  const fits = rowsFitting(budget, checkpointed);
  // Recomputing layers, and QLoRA's 4-bit linear weights, leave more room where the run can use them.
  const fitsCkpt = checkpointed ? 0 : rowsFitting(budget, true);
  const nf4 = wasmActivationBudget({ ...memory, baseDtype: 'nf4' });
  const fitsNf4 =
    memory.fullFinetune || memory.baseDtype === 'nf4' ? 0 : rowsFitting(nf4, checkpointed);
  const way = (flag: string, n: number) =>
    n > fits ? `with ${flag} ${n >= seqLen ? 'it fits' : `--seq-len ${n} fits`}; ` : '';
  const need = gib(activationBytes(config, k, seqLen, checkpointed));
  return (
    `warning: one ${k === 2 ? `pair of 2 x ${seqLen}` : `row of ${seqLen}`} tokens needs about ${need} ` +
    `of activations, more than the ${gib(Math.max(0, budget))} the wasm backend's 4 GiB heap leaves ` +
    `beside the model: the run may abort. ` +
    (fits > 1 ? `--seq-len ${fits} fits; ` : '') +
    way('--gradient-checkpointing', fitsCkpt) +
    way('--base-dtype nf4 (QLoRA)', fitsNf4) +
    'a GPU backend (--backend webgpu) has no such limit'
  );
}

/** The warning for weights (with a full fine-tune's gradients and optimizer state) that fill the heap alone. */
function tooBigWeights(memory: MicroBatchMemory): string {
  const what = memory.fullFinetune
    ? "the weights, their gradients and the optimizer's state"
    : 'the weights';
  return (
    `warning: ${what} need about ${gib(parameterBytes(memory))}, more than the ` +
    `${gib(ACTIVATION_SHARE * WASM_HEAP_BYTES)} of the wasm backend's 4 GiB heap that this run can use: ` +
    'the run will likely abort. ' +
    (memory.fullFinetune
      ? 'LoRA (without --full-finetune) keeps no gradient or state per weight, --optim sgd none beside the gradient; '
      : '') +
    'a GPU backend (--backend webgpu) has no such limit'
  );
}

/**
 * Rows per micro-batch: `requested` if given (refused when it cannot fit),
 * else the whole batch if it fits, else the largest micro-batch that does.
 * Only the wasm backend has a hard heap limit; the others take the batch.
 */
export function chooseMicroBatch(
  requested: number | undefined,
  batchSize: number,
  memory: MicroBatchMemory | undefined,
  note: (line: string) => void = (line) => console.error(line),
): number {
  if (memory === undefined || memory.backend !== 'wasm') return requested ?? batchSize;
  const { config, seqLen } = memory;
  const k = memory.sequencesPerRow ?? 1;
  const checkpointed = memory.gradientCheckpointing === true;
  const budget = wasmActivationBudget(memory);
  if (budget <= 0) {
    note(tooBigWeights(memory));
    return requested ?? 1;
  }
  const span = memory.documentSpan;
  const fit = Math.floor(largestMicroBatch(config, seqLen, budget, checkpointed, span) / k);
  const bytes = (rows: number) => activationBytes(config, k * rows, seqLen, checkpointed, span);
  const need = (rows: number) => gib(bytes(rows));
  if (bytes(1) > budget) note(tooLongRow(memory, budget));
  if (requested !== undefined) {
    if (requested <= fit) return requested;
    throw new UsageError(
      `train: --micro-batch-size ${requested}: one micro-batch of ${rowsText(requested, memory)} needs about ` +
        `${need(requested)} of activations, more than the ${gib(budget)} the wasm backend's 4 GiB heap leaves; ` +
        `use --micro-batch-size ${fit} or less` +
        (checkpointed ? '' : ' (or --gradient-checkpointing)') +
        ', or a GPU backend',
    );
  }
  if (batchSize <= fit) return batchSize;
  note(
    `micro-batches of ${fit} rows: one of ${rowsText(batchSize, memory)} would need about ${need(batchSize)}, ` +
      `more than the ${gib(budget)} the wasm heap leaves (--micro-batch-size N chooses)`,
  );
  return fit;
}
