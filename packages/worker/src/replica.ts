// One replica of a data-parallel run, built from its RunConfig alone: the
// base model, the training rows, LoRA on the target modules (the same seed on
// every worker, so the same initial A and B) and the training step. Building
// it twice from one config gives bitwise-identical replicas; the coordinator
// checks that they stay so.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type BaseDtype,
  type InitialFactors,
  type LoraInit,
  type PeftAdapter,
  TrainableParameters,
  changesBase,
  pissaNiter,
  loadPeftAdapter,
  pissaToLora,
  loraplusLrScales,
  readParametersAsync,
  savePeftAdapter,
  weightDecayScales,
} from '@lorafleet/core';
import { type SequenceRow, splitTrainValidation } from '@lorafleet/data';
import {
  type CausalLM,
  type LoadedModel,
  type ModelTokenizer,
  type KtoStatSums,
  type PairStatSums,
  type PeftTrainables,
  addPeftLora,
  addReferenceAdapter,
  evaluateKto,
  ktoKlSumsOver,
  hasReference,
  evaluatePairs,
  evaluateLossSums,
  type TokenStatSums,
  exportPeftAdapter,
  familyOf,
  loadModel,
  storeBasesAs,
  writeModelFolder,
} from '@lorafleet/models';
import { copyTokenizerFiles } from './model-files.js';
import {
  readAdapterValues,
  readCheckpointAdapter,
  readCheckpointTrainState,
  readTrainerState,
  writeCheckpointTensors,
} from './checkpoint.js';
import { type RunConfig, RunConfigError } from './run-config.js';
import { batchesOf, packsDocuments, prepareRows, rowsFingerprint } from './rows.js';
import { type AllReduce, type ComputeNotice, TrainingStep } from './step.js';

/**
 * PEFT's init_lora_weights for each --init, as adapter_config.json names it
 * (PiSSA's and OLoRA's true: the saved adapter is converted to a plain LoRA).
 */
const PEFT_INIT_NAMES: {
  [K in LoraInit['kind']]: PeftAdapter['config']['initLoraWeights'];
} = {
  kaiming: true,
  gaussian: 'gaussian',
  pissa: true,
  olora: true,
  orthogonal: 'orthogonal',
};

/**
 * W packed as the layers are built (the device never holds the model's
 * linear layers in f32), unless the run needs W in f32 first: PiSSA and
 * OLoRA rewrite it, modules_to_save trains whole modules.
 */
function baseDtypeAtLoad(config: RunConfig): BaseDtype {
  const needsF32 = changesBase(config.lora.init) || (config.lora.modulesToSave?.length ?? 0) > 0;
  return config.mode === 'lora' && !needsF32 ? config.baseDtype : 'f32';
}

/** A held-out shard's sums: the loss over its units (tokens, or pairs); a preference objective adds its pair sums. */
export interface EvalSums {
  lossSum: number;
  tokens: number;
  pairs?: PairStatSums;
  /** KTO: its sums over the shard and the held-out set's KL estimate. */
  kto?: KtoStatSums & { kl: number };
  /** The token loss: TRL's token metrics as sums (argmax hits, entropy). */
  tokenStats?: TokenStatSums;
}

/** KTO's two rounds (EvalRequest): the shard's KL sums only, or the loss given the set's KL. */
export type KtoEvalRound = { klSumsOnly: true } | { klSumsOnly: false; kl: number };

/** The adapter name inside each LoraLinear; PEFT drops "default" from the saved keys. */
export const ADAPTER_NAME = 'default';

export class Replica {
  private constructor(
    readonly config: RunConfig,
    private readonly loaded: LoadedModel,
    readonly rows: SequenceRow[],
    /** Each row's source line in the data file, to name rows in data errors. */
    readonly rowLines: Int32Array,
    /** The held-out rows (`evalData`), or none. */
    readonly evalRows: SequenceRow[],
    /** What LoRA trains (empty for a full fine-tune). */
    readonly trained: PeftTrainables | null,
    readonly step: TrainingStep,
    /** PiSSA only: the initial factors, to save the adapter for the original base weights. */
    private readonly pissaStart: Map<string, InitialFactors>,
  ) {}

  get model(): CausalLM {
    return this.loaded.model;
  }

  /** Loads model and data, adds LoRA (or trains every weight); the step sums gradients with `allReduce`. */
  static async build(config: RunConfig, allReduce: AllReduce): Promise<Replica> {
    const loaded = await loadModel(config.modelDir, { baseDtype: baseDtypeAtLoad(config) });
    const { model } = loaded;
    try {
      const { train, trainLines, held } = await readRows(config, loaded.tokenizer);
      const { trained, params, pissaStart } = await trainables(model, config);
      // --init-adapter: the adapter (made from its adapter_config.json) starts from its values.
      if (config.initAdapter) await startFromAdapter(model, config, config.initAdapter, params);
      await storeBasesAs(model, config.baseDtype); // after PiSSA, if W was loaded f32 for it
      const step = new TrainingStep(
        model,
        params,
        {
          optimizer: config.optimizer,
          schedule: config.schedule,
          maxGradNorm: config.maxGradNorm,
          seed: config.seed,
          lrScales: loraplusLrScales(params, config.loraplusLrRatio ?? 1),
          decayScales: weightDecayScales(params), // biases and norms: none, as Trainer
          ...(config.neftuneAlpha ? { neftuneAlpha: config.neftuneAlpha } : {}),
          ...(config.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
          ...(config.objective ? { objective: config.objective } : {}),
          ...(packsDocuments(config.rows) ? { packedDocuments: true } : {}),
        },
        allReduce,
        // DoRA's magnitudes start as W's row norms, computed where W lives (a GPU: no sync read)
        await readParametersAsync(params),
      );
      return new Replica(config, loaded, train, trainLines, held, trained, step, pissaStart);
    } catch (error) {
      model.dispose();
      throw error;
    }
  }

  /** The rows of these sample ids; an id outside the dataset is the coordinator's mistake. */
  rowsOf(ids: readonly number[]): SequenceRow[] {
    return ids.map((id) => {
      const row = this.rows[id];
      if (row === undefined) {
        throw new RangeError(`sample id ${id} is outside the ${this.rows.length} training rows`);
      }
      return row;
    });
  }

  /**
   * Loss sum and loss units (tokens, or preference pairs and reward sums) of
   * the current adapter on these held-out rows; KTO's round `kto` (its KL
   * sums alone: `klSums` [2], the sum and the rows).
   */
  async evaluate(
    ids: readonly number[],
    batchSize: number,
    onCompute?: ComputeNotice,
    kto: KtoEvalRound = { klSumsOnly: false, kl: 0 },
  ): Promise<EvalSums & { klSums?: Float32Array }> {
    const rows = ids.map((id) => {
      const row = this.evalRows[id];
      if (row === undefined) {
        throw new RangeError(`eval row ${id} is outside the ${this.evalRows.length} eval rows`);
      }
      return row;
    });
    // A forward pass costs less than a training micro-batch of the same size.
    const [limit, warmingUp] = [this.step.computeLimitMs(), this.step.warmingUp];
    const batches = batchesOf(rows, batchSize, this.config.rows);
    const notice = onCompute && (async () => onCompute(limit, warmingUp));
    const { objective } = this.config;
    let result: EvalSums & { klSums?: Float32Array };
    if (objective?.kind === 'kto') {
      // The KL estimate is the whole held-out set's: the coordinator adds every shard's sums first.
      if (kto.klSumsOnly) {
        const klSums = await ktoKlSumsOver(this.model, batches, notice);
        result = { lossSum: 0, tokens: 0, klSums };
      } else {
        const { lossSum, examples, ...sums } = await evaluateKto(
          this.model,
          batches,
          objective,
          notice,
          kto.kl,
        );
        result = { lossSum, tokens: examples, kto: sums };
      }
    } else if (objective) {
      const { lossSum, pairs, ...sums } = await evaluatePairs(
        this.model,
        batches,
        objective,
        notice,
      );
      result = { lossSum, tokens: pairs, pairs: sums };
    } else {
      const { lossSum, tokens, stats } = await evaluateLossSums(this.model, batches, notice);
      result = { lossSum, tokens, tokenStats: stats };
    }
    onCompute?.(0);
    return result;
  }

  /** The adapter as trained (for PiSSA: over the residual base), as checkpoints hold it. */
  private exportRaw(): Promise<PeftAdapter> {
    const { lora, modelDir } = this.config;
    if (!this.trained) throw new Error('a full fine-tune has no adapter to export');
    return exportPeftAdapter(this.trained, ADAPTER_NAME, lora, {
      initLoraWeights: PEFT_INIT_NAMES[lora.init],
      baseModelNameOrPath: modelDir,
      taskType: 'CAUSAL_LM',
      targetScope: familyOf(this.loaded.config).targetScope,
    });
  }

  /**
   * Adds this replica's adapter and optimizer state to a checkpoint folder that
   * the coordinator started (checkpoint.ts); returns the manifest's sha256.
   */
  async writeCheckpoint(tmp: string): Promise<string> {
    const { optimizer } = this.step.snapshot();
    return writeCheckpointTensors(tmp, {
      adapter: await this.exportRaw(),
      params: this.step.params,
      settings: this.config.optimizer,
      optimizer,
    });
  }

  /** Loads parameters and optimizer state from a checkpoint folder (a resumed run's first step). */
  async restore(dir: string): Promise<void> {
    const state = await readTrainerState(dir);
    const { params } = this.step;
    this.step.restore(
      await readCheckpointTrainState(dir, params, this.config.optimizer, state.step),
    );
  }

  /**
   * Writes what the run produces: the PEFT adapter folder (LoRA) or a model
   * folder (full fine-tuning); returns resultManifestSha256() of what was
   * written. `fromCheckpoint`: the adapter of that checkpoint folder (verified
   * first) instead of this replica's, which stays as it is.
   */
  async saveResult(dir: string, fromCheckpoint?: string): Promise<string> {
    if (this.config.mode === 'full') {
      await writeModelFolder(dir, this.loaded.config, await this.model.readWeights(), {
        sourceDir: this.config.modelDir,
      });
      await copyTokenizerFiles(this.config.modelDir, dir);
      return resultManifestSha256(dir, 'full');
    }
    const adapter = fromCheckpoint
      ? await readCheckpointAdapter(fromCheckpoint)
      : await this.exportRaw();
    // A PiSSA adapter is saved as a rank-2r LoRA for the original base weights.
    await savePeftAdapter(
      dir,
      this.pissaStart.size > 0 ? pissaToLora(adapter, this.pissaStart) : adapter,
    );
    return resultManifestSha256(dir, 'lora');
  }

  dispose(): void {
    this.step.dispose();
    this.model.dispose();
  }
}

/** The files of a run's result: the adapter's two, or the model's config and weights. */
const RESULT_FILES: Record<RunConfig['mode'], readonly string[]> = {
  lora: [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE],
  full: ['config.json', 'model.safetensors'],
};

/** sha-256 of a sha256sum-style manifest of a result folder's files (RESULT_FILES). */
export async function resultManifestSha256(dir: string, mode: RunConfig['mode']): Promise<string> {
  const lines: string[] = [];
  for (const file of RESULT_FILES[mode]) {
    const digest = createHash('sha256')
      .update(await readFile(join(dir, file)))
      .digest('hex');
    lines.push(`${digest}  ${file}\n`);
  }
  return createHash('sha256').update(lines.join('')).digest('hex');
}

/** The training rows and the held-out ones (--eval-data, or --eval-fraction of the training file). */
async function readRows(
  config: RunConfig,
  tokenizer: ModelTokenizer,
): Promise<{ train: SequenceRow[]; trainLines: Int32Array; held: SequenceRow[] }> {
  const prepared = await prepareRows(config.dataFile, tokenizer, config.rows);
  const fingerprint = rowsFingerprint(prepared.rows);
  if (fingerprint !== config.rowsFingerprint) {
    throw new RunConfigError(
      `${config.dataFile}: this worker's ${prepared.rows.length} rows (${fingerprint}) differ from ` +
        `the coordinator's (${config.rowsFingerprint}): do both read the same file and model tokenizer?`,
    );
  }
  if (config.evalData) {
    const { file, rowsFingerprint: expected } = config.evalData;
    const held = (await prepareRows(file, tokenizer, config.rows, '--eval-data')).rows;
    if (rowsFingerprint(held) !== expected) {
      throw new RunConfigError(
        `${file}: this worker's ${held.length} eval rows differ from the coordinator's: ` +
          'do both read the same file?',
      );
    }
    return { train: prepared.rows, trainLines: prepared.rowLines, held };
  }
  // The split depends on the row count and seed only: split the indices, keep each row's line.
  const parts = splitRows([...prepared.rows.keys()], config);
  return {
    train: parts.train.map((i) => prepared.rows[i]!),
    trainLines: Int32Array.from(parts.train, (i) => prepared.rowLines[i]!),
    held: parts.held.map((i) => prepared.rows[i]!),
  };
}

/** --eval-fraction: the same seeded split on every replica and in the coordinator's plan. */
export function splitRows<T>(
  rows: T[],
  config: Pick<RunConfig, 'evalFraction' | 'seed'>,
): { train: T[]; held: T[] } {
  if (config.evalFraction === 0) return { train: rows, held: [] };
  const parts = splitTrainValidation(rows, {
    seed: config.seed,
    validationFraction: config.evalFraction,
  });
  return { train: parts.train, held: parts.validation };
}

/**
 * Writes a PEFT adapter folder's values into the trained adapter; for DPO
 * and KTO (hasReference) also into a frozen copy, REFERENCE_ADAPTER, which
 * the reference pass uses:
 * TRL's "ref" adapter for a PEFT model that starts from a trained adapter.
 */
async function startFromAdapter(
  model: CausalLM,
  config: RunConfig,
  dir: string,
  params: TrainableParameters,
): Promise<void> {
  params.write(await readAdapterValues(dir, params));
  if (config.objective && hasReference(config.objective.kind))
    addReferenceAdapter(model, await loadPeftAdapter(dir), ADAPTER_NAME);
}

/**
 * What the run trains: LoRA on the targets (PiSSA and OLoRA keep their
 * initial factors), or every weight. Asynchronous: they read each W, which
 * GPU backends allow only with `await data()`.
 */
async function trainables(model: CausalLM, config: RunConfig) {
  const pissaStart = new Map<string, InitialFactors>();
  if (config.mode === 'full') {
    const params = new TrainableParameters(model.namedWeights());
    return { trained: null, params, pissaStart };
  }
  const { init, pissaNiter: niter } = config.lora;
  const how =
    niter !== undefined && init === 'pissa' ? pissaNiter(niter) : ({ kind: init } as LoraInit);
  const trained = await addPeftLora(model, ADAPTER_NAME, config.lora, how, config.seed);
  if (changesBase(init)) {
    // Kept to save the adapter for the original base weights.
    for (const layer of trained.linears) {
      const { a, b } = layer.activeAdapter!;
      pissaStart.set(layer.name, {
        a: (await a.data()) as Float32Array,
        b: (await b.data()) as Float32Array,
      });
    }
  }
  return { trained, params: trained.params, pissaStart };
}
