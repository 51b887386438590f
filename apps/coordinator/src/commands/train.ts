// `lorafleet train`: LoRA (or full) fine-tuning in one process. The step
// itself is @lorafleet/worker's TrainingStep, the same one distributed
// workers run; here its all-reduce is the identity.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type LoraInit,
  type LrSchedule,
  TrainableParameters,
  exportAdapter,
  savePeftAdapter,
  validateSchedule,
} from '@lorafleet/core';
import { GlobalBatchSampler, SAMPLER_START, splitTrainValidation } from '@lorafleet/data';
import { addLora, evaluateLoss, loadModel, writeGpt2Folder } from '@lorafleet/models';
import { TrainingStep } from '@lorafleet/worker';
import { type CommandSpec, type Options, UsageError } from '../args.js';
import {
  ADAPTER_NAME,
  backendOption,
  copyTokenizerFiles,
  formatCount,
  startBackend,
} from '../common.js';
import { Progress } from '../progress.js';
import { type PreparedRows, batchesOf, prepareRows } from '../training/rows.js';
import { dataOptions, rowOptionsFrom } from '../training/data-options.js';

export const trainSpec: CommandSpec = {
  name: 'train',
  summary: 'Fine-tune a model with LoRA (default) or fully, in this process.',
  configFile: true,
  options: {
    config: {
      kind: 'string',
      value: 'FILE',
      description: 'JSON file of option values (same names as the flags; flags win)',
    },
    model: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'base model folder (config.json + model.safetensors)',
    },
    data: {
      kind: 'string',
      value: 'FILE',
      required: true,
      description: 'training data: .jsonl, .csv or .txt',
    },
    'eval-data': {
      kind: 'string',
      value: 'FILE',
      description: 'held-out data for loss before/after (else --eval-fraction of --data)',
    },
    'eval-fraction': {
      kind: 'number',
      min: 0,
      max: 0.5,
      default: 0,
      description: 'share of --data rows held out for evaluation when no --eval-data',
    },
    out: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'output folder: adapter/ (or model/), metrics.jsonl, summary.json',
    },
    ...dataOptions,
    'lora-r': { kind: 'int', min: 1, default: 8, description: 'LoRA rank r' },
    'lora-alpha': {
      kind: 'number',
      min: 0.000001,
      default: 16,
      description: 'LoRA alpha (scaling = alpha / r)',
    },
    'lora-dropout': {
      kind: 'number',
      min: 0,
      max: 0.99,
      default: 0.05,
      description: 'dropout on the LoRA path',
    },
    target: {
      kind: 'list',
      value: 'NAMES',
      default: ['c_attn'],
      description: 'modules to adapt, PEFT names (c_attn, c_proj, c_fc)',
    },
    init: {
      kind: 'string',
      choices: ['kaiming', 'gaussian', 'pissa'],
      default: 'kaiming',
      description: 'LoRA initialisation',
    },
    rslora: { kind: 'boolean', description: 'rank-stabilised scaling alpha / sqrt(r)' },
    'full-finetune': {
      kind: 'boolean',
      description: 'train every weight instead of LoRA; saves a model folder',
    },
    steps: { kind: 'int', min: 1, description: 'optimizer steps (default: --epochs)' },
    epochs: {
      kind: 'number',
      min: 0.001,
      description: 'passes over the data (default 1 when --steps is absent)',
    },
    'batch-size': { kind: 'int', min: 1, default: 8, description: 'rows per optimizer step' },
    'micro-batch-size': {
      kind: 'int',
      min: 1,
      description: 'rows per forward/backward (gradient accumulation; default: --batch-size)',
    },
    lr: { kind: 'number', min: 0, default: 2e-4, description: 'peak learning rate' },
    'weight-decay': {
      kind: 'number',
      min: 0,
      default: 0,
      description: 'AdamW decoupled weight decay',
    },
    'warmup-steps': { kind: 'int', min: 0, default: 0, description: 'linear warmup steps' },
    schedule: {
      kind: 'string',
      choices: ['constant', 'linear', 'cosine'],
      default: 'linear',
      description: 'LR decay after warmup',
    },
    'max-grad-norm': {
      kind: 'number',
      min: 0,
      default: 1,
      description: 'global-norm gradient clipping (0: off)',
    },
    'eval-every': {
      kind: 'int',
      min: 0,
      default: 0,
      description: 'evaluate every N steps (0: only before and after)',
    },
    seed: {
      kind: 'int',
      min: 0,
      default: 0,
      description: 'seed of initialisation, shuffling and dropout',
    },
    backend: backendOption,
  },
  details: [
    'examples:',
    '  lorafleet train --model models/tiny --data train.jsonl --eval-data valid.jsonl --out runs/a --steps 200',
    '  lorafleet train --config train.json --lr 1e-3',
    '',
    'Data: JSONL lines {"text"}, {"prompt","completion"} (loss on the completion only) or {"input_ids"};',
    'CSV with --prompt-column/--completion-column or --text-column; .txt as one document. Bad records',
    'are skipped and reported by file:line; more than 1% bad stops the run.',
  ].join('\n'),
};

interface Split {
  train: PreparedRows['rows'];
  eval: PreparedRows['rows'];
}

export async function runTrain(o: Options): Promise<void> {
  const backend = await startBackend(o);
  const modelDir = o.string('model');
  const out = o.string('out');
  const { model, tokenizer, config } = await loadModel(modelDir);
  const rowOptions = rowOptionsFrom(o, config.nPositions);
  const seqLen = rowOptions.seqLen;
  const seed = o.number('seed');

  const log = (line: string) => console.log(line);
  const train = await prepareRows(o.string('data'), tokenizer, rowOptions);
  train.warnings.forEach((w) => console.warn(`warning: ${w}`));
  log(`data: ${o.string('data')}: ${train.description}`);
  const split: Split = { train: train.rows, eval: [] };
  const evalFile = o.optionalString('eval-data');
  if (evalFile) {
    const held = await prepareRows(evalFile, tokenizer, rowOptions);
    held.warnings.forEach((w) => console.warn(`warning: ${w}`));
    log(`eval data: ${evalFile}: ${held.description}`);
    split.eval = held.rows;
  } else if (o.number('eval-fraction') > 0) {
    const parts = splitTrainValidation(train.rows, {
      seed,
      validationFraction: o.number('eval-fraction'),
    });
    Object.assign(split, { train: parts.train, eval: parts.validation });
    log(`held out ${split.eval.length} of ${train.rows.length} rows for evaluation`);
  }

  const full = o.boolean('full-finetune');
  let adapted: ReturnType<typeof addLora> = [];
  let params: TrainableParameters;
  if (full) {
    params = new TrainableParameters(model.namedWeights());
  } else {
    const settings = {
      r: o.number('lora-r'),
      alpha: o.number('lora-alpha'),
      dropout: o.number('lora-dropout'),
      rslora: o.boolean('rslora'),
    };
    const init = { kind: o.string('init') } as LoraInit;
    adapted = addLora(model.linears(), ADAPTER_NAME, settings, init, o.list('target'), seed);
    params = TrainableParameters.fromLoraLayers(adapted);
  }
  const total = model.parameterCount();

  const batchSize = o.number('batch-size');
  const micro = o.optionalNumber('micro-batch-size') ?? batchSize;
  if (micro > batchSize)
    throw new UsageError(
      `train: --micro-batch-size (${micro}) exceeds --batch-size (${batchSize})`,
    );
  const sampler = new GlobalBatchSampler({
    datasetSize: split.train.length,
    seed,
    globalBatchSize: batchSize,
  });
  if (o.has('steps') && o.has('epochs'))
    throw new UsageError('train: give --steps or --epochs, not both');
  const steps =
    o.optionalNumber('steps') ??
    Math.max(1, Math.round((o.optionalNumber('epochs') ?? 1) * sampler.stepsPerEpoch));
  const schedule: LrSchedule =
    o.string('schedule') === 'constant'
      ? { kind: 'constant', warmupSteps: o.number('warmup-steps') }
      : {
          kind: o.string('schedule') as 'linear' | 'cosine',
          warmupSteps: o.number('warmup-steps'),
          totalSteps: steps,
        };
  validateSchedule(schedule);
  const maxGradNorm = o.number('max-grad-norm');
  const stepper = new TrainingStep(model, params, {
    optimizer: {
      lr: o.number('lr'),
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: o.number('weight-decay'),
    },
    schedule,
    maxGradNorm: maxGradNorm > 0 ? maxGradNorm : null,
    seed,
  });

  log(
    `model: ${modelDir} (${formatCount(total)} parameters, context ${config.nPositions}, vocab ${config.vocabSize}) on ${backend}`,
  );
  log(
    full
      ? `training: full fine-tune, ${formatCount(params.size)} trainable parameters`
      : `training: LoRA r=${o.number('lora-r')} alpha=${o.number('lora-alpha')} on ${adapted.length} modules (${o.list('target').join(', ')}), ` +
          `${formatCount(params.size)} trainable parameters (${((100 * params.size) / total).toFixed(2)}% of ${formatCount(total)})`,
  );
  log(
    `${steps} steps of ${batchSize} rows x ${seqLen} tokens (${(steps / sampler.stepsPerEpoch).toFixed(2)} epochs), micro-batches of ${micro}`,
  );

  const evaluate = () =>
    split.eval.length > 0 ? evaluateLoss(model, batchesOf(split.eval, batchSize, seqLen)) : null;
  const before = evaluate();
  if (before)
    log(
      `eval loss before: ${before.loss.toFixed(4)} (perplexity ${before.perplexity.toFixed(2)}, ${before.tokens} tokens)`,
    );

  await mkdir(out, { recursive: true });
  const metricsPath = join(out, 'metrics.jsonl');
  await writeFile(metricsPath, '');
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(
      '\ninterrupted: finishing this step and saving; press Ctrl-C again to quit at once',
    );
  };
  process.on('SIGINT', onSignal);

  const progress = new Progress({ label: 'train', total: steps });
  const started = performance.now();
  let state = SAMPLER_START;
  let tokensSeen = 0;
  const losses: number[] = [];
  let done = 0;
  for (let step = 0; step < steps && !interrupted; step++) {
    const planned = sampler.plan(state);
    const rows = planned.ids.map((i) => split.train[i]!);
    const result = await stepper.run(batchesOf(rows, micro, seqLen));
    state = planned.next;
    done = step + 1;
    tokensSeen += result.tokens;
    losses.push(result.loss);
    const seconds = (performance.now() - started) / 1000;
    const line: Record<string, unknown> = {
      step: result.step,
      epoch: planned.epoch,
      loss: result.loss,
      lr: result.lr,
      tokens: result.tokens,
      gradNorm: result.gradNorm,
      seconds,
      ...(result.applied ? {} : { skipped: 'non-finite gradient' }),
    };
    const every = o.number('eval-every');
    if (every > 0 && done % every === 0 && done < steps) {
      const e = evaluate();
      if (e) line.evalLoss = e.loss;
    }
    await appendFile(metricsPath, JSON.stringify(line) + '\n');
    progress.update(done, {
      loss: result.loss.toFixed(4),
      lr: result.lr.toExponential(2),
      'tok/s': (tokensSeen / seconds).toFixed(0),
      ...(typeof line.evalLoss === 'number' ? { eval: line.evalLoss.toFixed(4) } : {}),
    });
  }
  progress.finish();
  process.off('SIGINT', onSignal);
  const seconds = (performance.now() - started) / 1000;
  const after = evaluate();
  if (after)
    log(`eval loss after:  ${after.loss.toFixed(4)} (perplexity ${after.perplexity.toFixed(2)})`);

  const savedTo = full ? join(out, 'model') : join(out, 'adapter');
  if (full) {
    await writeGpt2Folder(savedTo, config, model.readWeights());
    await copyTokenizerFiles(modelDir, savedTo);
  } else {
    const init = o.string('init');
    await savePeftAdapter(
      savedTo,
      exportAdapter(adapted, ADAPTER_NAME, {
        targetModules: [...new Set(o.list('target'))],
        bias: 'none',
        initLoraWeights: init === 'kaiming' ? true : (init as 'gaussian' | 'pissa'),
        baseModelNameOrPath: modelDir,
        taskType: 'CAUSAL_LM',
      }),
    );
  }
  const head = losses.slice(0, Math.min(10, losses.length));
  const tail = losses.slice(-Math.min(10, losses.length));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const summary = {
    model: modelDir,
    mode: full ? 'full' : 'lora',
    steps: done,
    interrupted,
    trainLossFirst10: mean(head),
    trainLossLast10: mean(tail),
    evalLossBefore: before?.loss ?? null,
    evalLossAfter: after?.loss ?? null,
    trainableParameters: params.size,
    totalParameters: total,
    tokens: tokensSeen,
    seconds,
    tokensPerSecond: tokensSeen / seconds,
    backend,
    saved: savedTo,
  };
  await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  log(
    `done${interrupted ? ' (interrupted)' : ''}: ${done} steps in ${seconds.toFixed(1)} s, ${summary.tokensPerSecond.toFixed(0)} tokens/s; ` +
      `train loss ${summary.trainLossFirst10.toFixed(4)} (first 10 steps) -> ${summary.trainLossLast10.toFixed(4)} (last 10)` +
      (before && after ? `; eval loss ${before.loss.toFixed(4)} -> ${after.loss.toFixed(4)}` : ''),
  );
  log(`saved ${full ? 'model' : 'adapter (PEFT layout)'}: ${savedTo}; metrics: ${metricsPath}`);
  model.dispose();
  if (interrupted) process.exitCode = 130;
}
