// The optimizer and learning-rate options of `train` (spread into its spec):
// AdamW as torch's (transformers' names and defaults), clipping, and the
// schedule (transformers' lr_scheduler_type and lr_scheduler_kwargs).
import { SCHEDULE_KINDS } from '@lorafleet/core';
import { UsageError, defineOptions } from '../args.js';

/**
 * transformers' `optim` names this AdamW answers to: torch's AdamW and the
 * variants that compute its update (fused, XLA, NPU, bitsandbytes' paged
 * 32-bit), and those that keep its state quantized (8-bit, 4-bit), which run
 * here with float32 state: the update is adamw_torch's, and a warning says so.
 */
export const OPTIM_NAMES = {
  adamw_torch: 'same',
  adamw_torch_fused: 'same',
  adamw_torch_xla: 'same',
  adamw_torch_npu_fused: 'same',
  paged_adamw_32bit: 'same',
  adamw_torch_8bit: 'quantized',
  adamw_torch_4bit: 'quantized',
  adamw_bnb_8bit: 'quantized',
  adamw_8bit: 'quantized',
  paged_adamw_8bit: 'quantized',
} as const satisfies Record<string, 'same' | 'quantized'>;

export type OptimName = keyof typeof OPTIM_NAMES;

export const optimizerOptions = defineOptions({
  optim: {
    kind: 'string',
    value: 'NAME',
    default: 'adamw_torch',
    description:
      "the optimizer, by transformers' optim names: AdamW (adamw_torch; its fused, XLA, NPU and paged 32-bit names run the same update; 8-bit and 4-bit names run it with float32 state, with a warning); other optimizers are not implemented",
  },
  lr: {
    aliases: ['learning_rate'],
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 2e-4,
    description: 'peak learning rate',
  },
  'weight-decay': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 0,
    description:
      "AdamW decoupled weight decay; not on biases and norm weights, as transformers' Trainer",
  },
  'adam-beta1': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 0.9,
    description:
      "AdamW's beta1, the decay of the gradient average, in [0, 1) (transformers' adam_beta1)",
  },
  'adam-beta2': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 0.999,
    description:
      "AdamW's beta2, the decay of the squared-gradient average, in [0, 1) (transformers' adam_beta2; LLM recipes often take 0.95)",
  },
  'adam-epsilon': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 1e-8,
    description: "AdamW's epsilon, added to the denominator, > 0 (transformers' adam_epsilon)",
  },
  'warmup-steps': {
    aliases: ['warmup_ratio'],
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 0,
    description:
      "linear warmup: whole steps, or a share of --steps below 1 (rounded up), as transformers' warmup_steps",
  },
  schedule: {
    aliases: ['lr_scheduler_type'],
    affects: 'math',
    kind: 'string',
    choices: [...SCHEDULE_KINDS],
    default: 'linear',
    description:
      "LR after warmup, transformers' lr_scheduler_type (constant warms up too, as constant_with_warmup; reduce_lr_on_plateau lowers it when evaluations stop improving)",
  },
  'lr-scheduler-kwargs': {
    affects: 'math',
    kind: 'string',
    value: 'JSON',
    description:
      'the schedule\'s own settings, as transformers\' lr_scheduler_kwargs: cosine {"num_cycles"}, cosine_with_min_lr {"min_lr_rate" or "min_lr", "num_cycles"}, cosine_with_restarts {"num_cycles"}, polynomial {"lr_end", "power"}, inverse_sqrt {"timescale"}, warmup_stable_decay {"num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio", "num_cycles"}, reduce_lr_on_plateau {"mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"} (torch\'s ReduceLROnPlateau, stepped with --metric-for-best-model at each evaluation)',
  },
  'max-grad-norm': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 1,
    description: 'global-norm gradient clipping (0: off)',
  },
});

/**
 * --optim, checked: an AdamW name, or a UsageError naming what runs instead;
 * `warning` for the names whose state is quantized.
 */
export function optimFrom(name: string): { name: OptimName; warning: string | null } {
  if (!Object.hasOwn(OPTIM_NAMES, name)) {
    const same = (Object.keys(OPTIM_NAMES) as OptimName[]).filter((n) => OPTIM_NAMES[n] === 'same');
    throw new UsageError(
      `train: --optim ${name}: only AdamW is implemented (torch's: --optim adamw_torch, the default; ` +
        `${same.slice(1).join(', ')} run the same update, and the 8-bit and 4-bit AdamW names run it with float32 state)`,
    );
  }
  const optim = name as OptimName;
  const warning =
    OPTIM_NAMES[optim] === 'quantized'
      ? `--optim ${optim}: the AdamW state stays in float32 (8 bytes per trainable parameter, small for LoRA): the update is adamw_torch's, not the quantized one's`
      : null;
  return { name: optim, warning };
}
