// The optimizer and learning-rate options of `train` (spread into its spec):
// the optimizer (transformers' optim names and optim_args), clipping, and the
// schedule (transformers' lr_scheduler_type and lr_scheduler_kwargs).
import { type OptimizerKind, SCHEDULE_KINDS } from '@lorafleet/core';
import { defineOptions } from '../args.js';

/**
 * transformers' `optim` names, and the optimizer each runs here: torch's
 * AdamW under its own name and those that compute its update (fused, XLA,
 * NPU, bitsandbytes' paged 32-bit); torch's SGD, Adagrad and RMSprop;
 * transformers' Adafactor; bitsandbytes' 32-bit Lion. `quantized`: the name
 * keeps its state in 8 or 4 bits, which runs here with float32 state (the
 * unquantized update), with a warning.
 */
export const OPTIM_NAMES = {
  adamw_torch: { kind: 'adamw' },
  adamw_torch_fused: { kind: 'adamw' },
  adamw_torch_xla: { kind: 'adamw' },
  adamw_torch_npu_fused: { kind: 'adamw' },
  paged_adamw_32bit: { kind: 'adamw' },
  adamw_torch_8bit: { kind: 'adamw', quantized: true },
  adamw_torch_4bit: { kind: 'adamw', quantized: true },
  adamw_bnb_8bit: { kind: 'adamw', quantized: true },
  adamw_8bit: { kind: 'adamw', quantized: true },
  paged_adamw_8bit: { kind: 'adamw', quantized: true },
  sgd: { kind: 'sgd' },
  adagrad: { kind: 'adagrad' },
  rmsprop: { kind: 'rmsprop' },
  adafactor: { kind: 'adafactor' },
  lion_32bit: { kind: 'lion' },
  paged_lion_32bit: { kind: 'lion' },
  lion_8bit: { kind: 'lion', quantized: true },
  paged_lion_8bit: { kind: 'lion', quantized: true },
} as const satisfies Record<string, { kind: OptimizerKind; quantized?: true }>;

export type OptimName = keyof typeof OPTIM_NAMES;

export const optimizerOptions = defineOptions({
  optim: {
    affects: 'math',
    kind: 'string',
    value: 'NAME',
    default: 'adamw_torch',
    description:
      "the optimizer, by transformers' optim names: adamw_torch (and the names that run its update: adamw_torch_fused, paged_adamw_32bit, ...), sgd, adagrad, rmsprop, adafactor, lion_32bit; 8-bit and 4-bit names run with float32 state, with a warning",
  },
  'optim-args': {
    aliases: ['optim_args'],
    affects: 'math',
    kind: 'string',
    value: 'K=V,...',
    description:
      "the optimizer's own settings, as transformers' optim_args: sgd momentum, dampening, nesterov; adagrad lr_decay, eps; rmsprop momentum, alpha, eps (AdamW and Lion take --adam-beta1/--adam-beta2, AdamW --adam-epsilon)",
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
      "weight decay: decoupled for AdamW, Adafactor and Lion, added to the gradient for SGD, Adagrad and RMSprop (as torch's); not on biases and norm weights, as transformers' Trainer",
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
      'the schedule\'s own settings, as transformers\' lr_scheduler_kwargs: cosine {"num_cycles"}, cosine_with_min_lr {"min_lr_rate" or "min_lr", "num_cycles"}, cosine_warmup_with_min_lr {the same and "warmup_lr_rate"}, cosine_with_restarts {"num_cycles"}, polynomial {"lr_end", "power"}, inverse_sqrt {"timescale"}, warmup_stable_decay {"num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio", "num_cycles"}, reduce_lr_on_plateau {"mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"} (torch\'s ReduceLROnPlateau, stepped with --metric-for-best-model at each evaluation)',
  },
  'max-grad-norm': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 1,
    description: 'global-norm gradient clipping (0: off)',
  },
});
