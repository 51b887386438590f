// `lorafleet train`: LoRA (or full) fine-tuning in one process. The step
// itself is @lorafleet/worker's TrainingStep, the same one distributed
// workers run; here its all-reduce is the identity.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BaseDtype,
  type InitialFactors,
  pissaToLora,
  type LoraInit,
  TrainableParameters,
  exportAdapter,
  savePeftAdapter,
} from '@lorafleet/core';
import { SAMPLER_START, splitTrainValidation } from '@lorafleet/data';
import { addLora, evaluateLoss, loadModel, writeGpt2Folder } from '@lorafleet/models';
import { TrainingStep, rowsFingerprint } from '@lorafleet/worker';
import { type Options, UsageError } from '../args.js';
import { membershipFrom } from '../distributed/membership.js';
import { runDistributedTrain } from '../distributed/train.js';
import { ADAPTER_NAME, copyTokenizerFiles, formatCount, startBackend } from '../common.js';
import { Progress } from '../progress.js';
import { onInterrupt } from '../training/interrupt.js';
import { observeRun, runFacts } from '../observe/observer.js';
import { type PreparedRows, batchesOf, prepareRows } from '../training/rows.js';
import { rowOptionsFrom } from '../training/data-options.js';
import { stepOptionsFrom } from '../training/step-options.js';
import {
  CHECKPOINTS_DIR,
  checkpointName,
  pruneCheckpoints,
  writeCheckpoint,
} from '../training/checkpoint.js';
import {
  configHash,
  modelFingerprint,
  resumeRun,
  trainingConfig,
  trimMetrics,
} from '../training/resume.js';
export { trainSpec } from '../training/train-spec.js';

interface Split {
  train: PreparedRows['rows'];
  eval: PreparedRows['rows'];
}

export async function runTrain(o: Options): Promise<void> {
  const checkpointEvery = o.number('checkpoint-every');
  const resumeFrom = o.optionalString('resume');
  const membership = membershipFrom(o, (w) => console.warn(`warning: ${w}`));
  const baseDtype = o.string('base-dtype') as BaseDtype;
  if (baseDtype !== 'f32' && (membership || o.boolean('full-finetune')))
    throw new UsageError(
      `train: --base-dtype ${baseDtype} needs LoRA in one process (not --workers or --full-finetune)`,
    );
  if (membership) return runDistributedTrain(o, membership);
  if (o.boolean('full-finetune') && (resumeFrom || checkpointEvery > 0))
    throw new UsageError('train: --resume and --checkpoint-every need LoRA, not --full-finetune');
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
    const held = await prepareRows(evalFile, tokenizer, rowOptions, '--eval-data');
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
  let adapted: Awaited<ReturnType<typeof addLora>> = [];
  const pissaStart = new Map<string, InitialFactors>();
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
    adapted = await addLora(model.linears(), ADAPTER_NAME, settings, init, o.list('target'), seed);
    params = TrainableParameters.fromLoraLayers(adapted);
    await model.storeBasesAs(baseDtype); // after PiSSA, which rewrites W in f32
    if (init.kind === 'pissa') {
      // Kept to convert the adapter for the original base at save time.
      for (const layer of adapted) {
        const { a, b } = layer.activeAdapter!;
        pissaStart.set(layer.name, {
          a: (await a.data()) as Float32Array,
          b: (await b.data()) as Float32Array,
        });
      }
    }
  }
  const total = model.parameterCount();

  const {
    batchSize,
    microBatchSize: micro,
    sampler,
    steps,
    schedule,
    optimizer,
    maxGradNorm,
  } = stepOptionsFrom(o, split.train.length);
  const stepper = new TrainingStep(model, params, { optimizer, schedule, maxGradNorm, seed });

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

  const warn = (line: string) => console.warn(`warning: ${line}`);
  // What must match on resume; checkpoints are LoRA only.
  const runConfig = full
    ? null
    : trainingConfig(o, {
        rows: rowsFingerprint(train.rows),
        model: await modelFingerprint(modelDir),
      });
  const resumed = resumeFrom
    ? await resumeRun(resumeFrom, { params, stepper, config: runConfig!, steps, schedule, warn })
    : null;
  if (resumed) log(`resumed from ${resumed.dir} at step ${resumed.step}`);
  const startStep = resumed?.step ?? 0;
  let state = resumed?.sampler ?? SAMPLER_START;
  let tokensSeen = resumed?.tokensSeen ?? 0;
  const exportLora = () =>
    exportAdapter(adapted, ADAPTER_NAME, {
      targetModules: [...new Set(o.list('target'))],
      bias: 'none',
      initLoraWeights: o.string('init') === 'gaussian' ? 'gaussian' : true,
      baseModelNameOrPath: modelDir,
      taskType: 'CAUSAL_LM',
    });
  // The raw adapter (for PiSSA: over the residual base), so a resume restores it as trained.
  const saveCheckpoint = async (step: number) => {
    await writeCheckpoint(out, {
      adapter: exportLora(),
      params,
      optimizer: stepper.snapshot().optimizer,
      state: {
        formatVersion: 1,
        step,
        epoch: step / sampler.stepsPerEpoch,
        sampler: state,
        seed,
        configHash: configHash(runConfig!),
        config: runConfig!,
        totalSteps: steps,
        tokensSeen,
        rng: { kind: 'derived', seed, step },
      },
    });
    await pruneCheckpoints(out, o.number('keep-checkpoints'), step);
    observer.emit({
      type: 'checkpoint',
      step,
      path: join(out, CHECKPOINTS_DIR, checkpointName(step)),
    });
  };

  const evaluate = async () =>
    split.eval.length > 0
      ? await evaluateLoss(model, batchesOf(split.eval, batchSize, seqLen))
      : null;
  const before = await evaluate();
  if (before)
    log(
      `eval loss before: ${before.loss.toFixed(4)} (perplexity ${before.perplexity.toFixed(2)}, ${before.tokens} tokens)`,
    );

  await mkdir(out, { recursive: true });
  const observer = await observeRun(o, out, resumed !== null);
  observer.emit({
    type: 'run',
    facts: runFacts({
      runId: `local-${process.pid}-${Date.now()}`,
      model: modelDir,
      mode: full ? 'full' : 'lora',
      totalParameters: total,
      trainableParameters: params.size,
      lora: full
        ? null
        : {
            r: o.number('lora-r'),
            alpha: o.number('lora-alpha'),
            dropout: o.number('lora-dropout'),
            targets: o.list('target'),
          },
      backend,
      workers: 1,
      steps,
      batchSize,
      seqLen,
    }),
  });
  if (before) observer.emit({ type: 'eval', step: startStep, loss: before.loss });
  const metricsPath = join(out, 'metrics.jsonl');
  if (resumeFrom) await trimMetrics(metricsPath, startStep);
  else await writeFile(metricsPath, '');
  const interrupt = onInterrupt();

  const progress = new Progress({ label: 'train', total: steps });
  const started = performance.now();
  const tokensBefore = tokensSeen;
  const losses: number[] = [];
  let done = startStep;
  for (let step = startStep; step < steps && !interrupt.requested; step++) {
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
      const e = await evaluate();
      if (e) line.evalLoss = e.loss;
    }
    await appendFile(metricsPath, JSON.stringify(line) + '\n');
    observer.emit({
      type: 'step',
      step: result.step,
      epoch: planned.epoch,
      loss: result.loss,
      lr: result.lr,
      tokens: result.tokens,
      tokensPerSecond: (tokensSeen - tokensBefore) / seconds,
      gradNorm: result.gradNorm,
      seconds,
    });
    if (typeof line.evalLoss === 'number')
      observer.emit({ type: 'eval', step: done, loss: line.evalLoss });
    progress.update(done, {
      loss: result.loss.toFixed(4),
      lr: result.lr.toExponential(2),
      'tok/s': ((tokensSeen - tokensBefore) / seconds).toFixed(0),
      ...(typeof line.evalLoss === 'number' ? { eval: line.evalLoss.toFixed(4) } : {}),
    });
    if (runConfig && checkpointEvery > 0 && done % checkpointEvery === 0 && done < steps)
      await saveCheckpoint(done);
  }
  if (runConfig && done > startStep) await saveCheckpoint(done);
  progress.finish();
  interrupt.dispose();
  const interrupted = interrupt.requested;
  const seconds = (performance.now() - started) / 1000;
  const after = await evaluate();
  if (after) {
    log(`eval loss after:  ${after.loss.toFixed(4)} (perplexity ${after.perplexity.toFixed(2)})`);
    observer.emit({ type: 'eval', step: done, loss: after.loss });
  }

  const savedTo = full ? join(out, 'model') : join(out, 'adapter');
  if (full) {
    await writeGpt2Folder(savedTo, config, await model.readWeights());
    await copyTokenizerFiles(modelDir, savedTo);
  } else {
    const adapter = exportLora();
    // A PiSSA adapter is saved as a rank-2r LoRA for the original base weights.
    await savePeftAdapter(
      savedTo,
      pissaStart.size > 0 ? pissaToLora(adapter, pissaStart) : adapter,
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
    tokensPerSecond: (tokensSeen - tokensBefore) / seconds,
    backend,
    saved: savedTo,
  };
  await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  log(
    `done${interrupted ? ' (interrupted)' : ''}: ${done} steps in ${seconds.toFixed(1)} s, ${summary.tokensPerSecond.toFixed(0)} tokens/s; ` +
      `train loss ${summary.trainLossFirst10.toFixed(4)} (first ${head.length} steps) -> ${summary.trainLossLast10.toFixed(4)} (last ${tail.length})` +
      (before && after ? `; eval loss ${before.loss.toFixed(4)} -> ${after.loss.toFixed(4)}` : ''),
  );
  log(`saved ${full ? 'model' : 'adapter (PEFT layout)'}: ${savedTo}; metrics: ${metricsPath}`);
  observer.emit({
    type: 'end',
    status: interrupted ? 'interrupted' : 'finished',
    message: `${done} steps; saved ${savedTo}`,
  });
  await observer.close();
  model.dispose();
  if (interrupted) process.exitCode = 130;
}
