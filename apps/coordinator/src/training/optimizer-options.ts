// The optimizer and learning-rate options of `train` (spread into its spec):
// AdamW as torch's (transformers' names and defaults), clipping, and the
// schedule (transformers' lr_scheduler_type and lr_scheduler_kwargs).
import { SCHEDULE_KINDS } from '@lorafleet/core';
import { defineOptions } from '../args.js';

export const optimizerOptions = defineOptions({
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
      "LR after warmup, transformers' lr_scheduler_type (constant warms up too, as constant_with_warmup)",
  },
  'lr-scheduler-kwargs': {
    affects: 'math',
    kind: 'string',
    value: 'JSON',
    description:
      'the schedule\'s own settings, as transformers\' lr_scheduler_kwargs: cosine {"num_cycles"}, cosine_with_min_lr {"min_lr_rate" or "min_lr", "num_cycles"}, cosine_with_restarts {"num_cycles"}, polynomial {"lr_end", "power"}, inverse_sqrt {"timescale"}, warmup_stable_decay {"num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio", "num_cycles"}',
  },
  'max-grad-norm': {
    affects: 'math',
    kind: 'number',
    min: 0,
    default: 1,
    description: 'global-norm gradient clipping (0: off)',
  },
});
