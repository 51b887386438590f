// The options of `lorafleet train` (also the keys of its --config file).
import { type CommandValues, defineCommand } from '../args.js';
import { backendOption, baseDtypeOption } from '../common.js';
import { bestModelOptions } from './best-model-options.js';
import { dataOptions } from './data-options.js';
import { optimizerOptions } from './optimizer-options.js';
import { objectiveOptions } from './objective-options.js';
import { peftOptions } from './peft-options.js';
import { launchOptions } from '../launch/options.js';
import { TERM_GRACE_SECONDS } from './interrupt.js';

export const trainSpec = defineCommand({
  name: 'train',
  summary: 'Fine-tune a model with LoRA (default) or fully, in this process or over N workers.',
  configFile: true,
  options: {
    config: {
      kind: 'string',
      value: 'FILE',
      description: 'JSON file of option values (same names as the flags; flags win)',
    },
    model: {
      aliases: ['model_name_or_path', 'base_model_name_or_path'],
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'base model folder (config.json + model.safetensors)',
    },
    data: {
      aliases: ['train_file', 'dataset', 'dataset_name'],
      kind: 'string',
      value: 'FILE',
      required: true,
      description: 'training data: .jsonl, .csv or .txt',
    },
    'eval-data': {
      aliases: ['validation_file', 'eval_dataset'],
      kind: 'string',
      value: 'FILE',
      description: 'held-out data for loss before/after (else --eval-fraction of --data)',
    },
    'eval-fraction': {
      affects: 'math',
      kind: 'number',
      min: 0,
      max: 0.5,
      default: 0,
      description: 'share of --data rows held out for evaluation when no --eval-data',
    },
    out: {
      aliases: ['output_dir'],
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'output folder: adapter/ (or model/), checkpoints/, metrics.jsonl, summary.json',
    },
    ...dataOptions,
    'lora-r': {
      aliases: ['r'],
      affects: 'math',
      kind: 'int',
      min: 1,
      default: 8,
      description: 'LoRA rank r',
    },
    'lora-alpha': {
      affects: 'math',
      kind: 'number',
      min: 0.000001,
      default: 16,
      description: 'LoRA alpha (scaling = alpha / r)',
    },
    'lora-dropout': {
      affects: 'math',
      kind: 'number',
      min: 0,
      max: 0.99,
      default: 0.05,
      description: 'dropout on the LoRA path',
    },
    ...peftOptions,
    init: {
      aliases: ['init_lora_weights'],
      affects: 'math',
      kind: 'string',
      value: 'KIND',
      default: 'kaiming',
      description:
        "LoRA initialisation, PEFT's init_lora_weights: kaiming (its default, true), gaussian, pissa (W's top-r singular triplets; W becomes the residual), pissa_niter_N (PiSSA from a randomized SVD of exactly r samples and N power iterations, as PEFT's: faster, approximate for small N), olora (W's QR: B = Q's first r columns, A = R's first r rows; W becomes the residual), orthogonal (A and B from one random orthogonal matrix's odd and even rows: B A = 0, both non-zero; an even --lora-r)",
    },
    rslora: {
      aliases: ['use_rslora'],
      affects: 'math',
      kind: 'boolean',
      description: 'rank-stabilised scaling alpha / sqrt(r)',
    },
    'full-finetune': {
      affects: 'math',
      kind: 'boolean',
      description: 'train every weight instead of LoRA; saves a model folder',
    },
    steps: {
      aliases: ['max_steps'],
      kind: 'int',
      min: 1,
      description: 'optimizer steps (default: --epochs)',
    },
    epochs: {
      aliases: ['num_train_epochs'],
      kind: 'number',
      min: 0.001,
      description: 'passes over the data (default 1 when --steps is absent)',
    },
    'batch-size': {
      affects: 'math',
      kind: 'int',
      min: 1,
      default: 8,
      description: 'rows per optimizer step',
    },
    'dataloader-drop-last': {
      affects: 'math',
      kind: 'boolean',
      default: false,
      description:
        "leave out each epoch's last, short batch (its rows wait for the next epoch's order), as transformers' dataloader_drop_last",
    },
    'train-sampling-strategy': {
      aliases: ['group_by_length'],
      affects: 'math',
      kind: 'string',
      choices: ['random', 'group_by_length', 'sequential'],
      default: 'random',
      description:
        "the rows of each epoch: shuffled, shuffled then grouped into batches of similar lengths (transformers' LengthGroupedSampler: less padding under --padding longest; the longest batch first), or in file order",
    },
    'gradient-accumulation-steps': {
      kind: 'int',
      min: 1,
      description:
        'instead of --batch-size, as transformers counts it: --batch-size = --micro-batch-size (per_device_train_batch_size) x this x the workers',
    },
    'micro-batch-size': {
      aliases: ['per_device_train_batch_size'],
      affects: 'math',
      kind: 'int',
      min: 1,
      description: 'rows per forward/backward (gradient accumulation; default: --batch-size)',
    },
    ...objectiveOptions,
    'gradient-checkpointing': {
      aliases: ['gradient_checkpointing'],
      kind: 'boolean',
      description:
        "keep only each layer's input for backward and recompute the rest there (transformers' " +
        'gradient_checkpointing): far less activation memory, one more forward pass; the same gradients',
    },
    ...optimizerOptions,
    'neftune-noise-alpha': {
      affects: 'math',
      kind: 'number',
      min: 0,
      default: 0,
      description:
        "NEFTune (transformers' neftune_noise_alpha): uniform noise of alpha / sqrt(seq-len x hidden) " +
        'on the input embeddings while training, e.g. 5 (0: off)',
    },
    'loraplus-lr-ratio': {
      affects: 'math',
      kind: 'number',
      min: 1,
      default: 1,
      description:
        "LoRA+ (PEFT's create_loraplus_optimizer): lora_B and 1-D trained parameters (biases, norms, DoRA magnitudes) learn at --lr times this, e.g. 16 (1: off)",
    },
    'wire-dtype': {
      affects: 'math',
      kind: 'string',
      choices: ['fp32', 'bf16', 'fp16'],
      default: 'fp32',
      description:
        'gradients on the ring all-reduce: bf16/fp16 halve the bytes per step; every rank rounds ' +
        'the sums the same way, so replicas stay identical (fp16 overflows past 65504)',
    },
    'eval-every': {
      aliases: ['eval_steps'],
      kind: 'int',
      min: 0,
      default: 0,
      description: 'evaluate every N steps (0: only before and after)',
    },
    'eval-strategy': {
      kind: 'string',
      choices: ['steps', 'epoch'],
      default: 'steps',
      description:
        "when to evaluate during training, transformers' eval_strategy: every --eval-every steps, or at the end of every epoch",
    },
    'save-strategy': {
      kind: 'string',
      choices: ['steps', 'epoch'],
      default: 'steps',
      description:
        "when to write a checkpoint, transformers' save_strategy: every --checkpoint-every steps, or at the end of every epoch",
    },
    'eval-batch-size': {
      aliases: ['per_device_eval_batch_size'],
      kind: 'int',
      min: 1,
      description:
        'held-out rows per forward on each worker (default: the micro-batch size; a forward alone needs less memory than a training step)',
    },
    seed: {
      affects: 'math',
      kind: 'int',
      min: 0,
      default: 0,
      description: 'seed of initialisation, shuffling and dropout',
    },
    'data-seed': {
      affects: 'math',
      kind: 'int',
      min: 0,
      description:
        "seed of the batch order alone (transformers' data_seed; default: --seed), so runs of other --seed see the same batches",
    },
    'checkpoint-every': {
      aliases: ['save_steps'],
      kind: 'int',
      min: 0,
      default: 0,
      description:
        'write OUT/checkpoints/step-NNNNNN every K steps (0: only at the end); with --workers N, rank 0 writes them',
    },
    'keep-checkpoints': {
      aliases: ['save_total_limit'],
      kind: 'int',
      min: 1,
      default: 3,
      description:
        'checkpoints kept (the oldest are deleted; with --load-best-model-at-end the best one is kept too)',
    },
    ...bestModelOptions,
    overwrite: {
      aliases: ['overwrite_output_dir'],
      kind: 'boolean',
      description: 'replace an earlier run in --out (its metrics, events, checkpoints and result)',
    },
    'max-skipped-steps': {
      kind: 'int',
      min: 0,
      default: 0,
      description:
        'updates that may be skipped for a non-finite gradient before the run stops as diverged',
    },
    resume: {
      aliases: ['resume_from_checkpoint'],
      kind: 'string',
      value: 'DIR',
      description:
        'continue from a run folder (its newest valid checkpoint) or a checkpoint folder, exactly (any --workers)',
    },
    backend: backendOption,
    'base-dtype': {
      ...baseDtypeOption,
      affects: 'math',
      description: `${baseDtypeOption.description} (LoRA only; applied after PiSSA)`,
    },
    workers: {
      aliases: ['nproc_per_node'],
      kind: 'int',
      min: 1,
      max: 256,
      default: 1,
      description:
        'worker processes training in synchronous data parallel (LoRA only); 1: in this process',
    },
    listen: {
      kind: 'string',
      value: 'URL',
      description:
        'wait for external `lorafleet-worker --coordinator URL` daemons on tcp://HOST:PORT instead of spawning (needs --expect)',
    },
    expect: {
      kind: 'int',
      min: 1,
      max: 256,
      description: 'with --listen: the number of workers to wait for; they are ranked as they join',
    },
    'join-timeout': {
      kind: 'number',
      min: 1,
      default: 120,
      description: 'with --listen: seconds to wait for --expect workers to join',
    },
    'allow-remote': {
      kind: 'boolean',
      description:
        'let --listen bind a non-loopback address without --curve-key (traffic unencrypted and unauthenticated)',
    },
    'min-workers': {
      kind: 'int',
      min: 1,
      default: 1,
      description:
        'with several workers: train on while at least this many live; below it, wait (up to --join-timeout) for replacements',
    },
    'max-restarts': {
      kind: 'int',
      min: 0,
      default: 3,
      description:
        'with --workers N: respawn a lost local worker up to this many times in all; it joins at a step boundary',
    },
    'heartbeat-timeout': {
      kind: 'number',
      // Workers beat every second: below two, a busy machine's jitter evicts healthy ones.
      min: 2,
      default: 5,
      description:
        'seconds of silence after which a worker is declared lost (workers beat from a thread of their own, also while they compute)',
    },
    'step-timeout': {
      kind: 'number',
      min: 1,
      description:
        "seconds a worker's micro-batch may go without progress before the worker counts as hung and is lost (default: each worker's own limit, 10x its slowest measured micro-batch, at least 30 s; a worker's first micro-batch, which compiles kernels, always gets 300 s)",
    },
    'curve-key': {
      kind: 'string',
      value: 'FILE',
      description:
        "the coordinator's CURVE key pair (from `lorafleet keys`): encrypt and authenticate both planes",
    },
    'authorized-keys': {
      kind: 'string',
      value: 'PATH',
      description:
        'with --curve-key: the workers admitted, as public key files (.pub) or a folder of them',
    },
    gpus: {
      kind: 'list',
      value: 'I,J,...',
      description:
        'with --workers N and a GPU backend: the GPU (WebGPU adapter index) of each local worker, in rank order (default on webgpu: the GPUs in turn, one per worker)',
    },
    ...launchOptions,
    dashboard: {
      kind: 'string',
      value: 'HOST:PORT',
      description:
        'serve the live dashboard at http://HOST:PORT (port 0: any free one); the URL is printed at start',
    },
    'no-dashboard': {
      kind: 'boolean',
      description: 'do not serve the dashboard (overrides --dashboard, e.g. from --config)',
    },
    'dashboard-token': {
      kind: 'string',
      value: 'TOKEN',
      description:
        'required by every dashboard request (as ?token= or a Bearer header); needed to bind a non-loopback address',
    },
    'report-to': {
      kind: 'string',
      choices: ['none', 'tensorboard'],
      default: 'none',
      description:
        "tensorboard: also write every metrics.jsonl line to OUT/runs/ as TensorBoard scalars, under transformers' and TRL's names (train/loss, train/learning_rate, eval/loss, train/rewards/accuracies...): transformers' report_to",
    },
  },
  details: [
    'examples:',
    '  lorafleet train --model models/tiny --data train.jsonl --eval-data valid.jsonl --out runs/a --steps 200',
    '  lorafleet train --config train.json --lr 1e-3',
    '  lorafleet train --model models/tiny --data train.jsonl --out runs/b --steps 200 --workers 4',
    '  lorafleet train --model models/tiny --data train.jsonl --out runs/c --listen tcp://127.0.0.1:5555 --expect 2',
    '  lorafleet train --model models/tiny --data train.jsonl --out runs/a --steps 400 --resume runs/a',
    '',
    'Data: JSONL lines {"text"}, {"prompt","completion"} (loss on the completion only), {"messages"}',
    'or {"input_ids"}; with --objective dpo, orpo, simpo or cpo, {"prompt","chosen","rejected"} lines',
    '(preference pairs, TRL\'s format); with kto, {"prompt","completion","label"}. CSV columns, or JSONL',
    'fields by other names, with --prompt-column/--completion-column (and --prompt-template) or',
    '--text-column; .txt as one document. Bad records',
    'are skipped and reported by file:line; more than 1% bad (--max-bad-fraction) stops the run.',
    '',
    'Stopping: Ctrl-C (SIGINT) or SIGTERM finishes the step in flight, writes a checkpoint, stops the',
    `workers and exits 130 (SIGINT) or 143 (SIGTERM); after SIGTERM this takes at most ${TERM_GRACE_SECONDS} s, then the`,
    'process exits at once keeping the last checkpoint. A second signal quits at once. A run that diverges',
    '(non-finite loss or parameters) stops with exit 1 and writes no adapter.',
    '',
    'Best model: --eval-every K --load-best-model-at-end saves the best evaluated checkpoint as',
    'OUT/adapter; --early-stopping-patience P stops after P evaluations without improvement.',
    '',
    'Resume: give the same options plus --resume; options that change the training must match the',
    "checkpoint's (--steps may be raised). The result is bitwise the uninterrupted run's with the same",
    '--workers; with --workers N every worker loads the checkpoint before its first step.',
  ].join('\n'),
});

/** `lorafleet train`'s options, parsed once and typed from the spec. */
export type TrainOptions = CommandValues<typeof trainSpec>;
