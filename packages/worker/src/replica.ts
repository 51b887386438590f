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
  type InitialFactors,
  type LoraInit,
  type LoraLinear,
  type PeftAdapter,
  TrainableParameters,
  exportAdapter,
  pissaToLora,
  savePeftAdapter,
} from '@lorafleet/core';
import type { SequenceRow } from '@lorafleet/data';
import { type Gpt2Model, addLora, evaluateLossSums, loadModel } from '@lorafleet/models';
import {
  readCheckpointTrainState,
  readTrainerState,
  writeCheckpointTensors,
} from './checkpoint.js';
import { type RunConfig, RunConfigError } from './run-config.js';
import { batchesOf, prepareRows, rowsFingerprint } from './rows.js';
import { type AllReduce, type ComputeNotice, TrainingStep } from './step.js';

/** The adapter name inside each LoraLinear; PEFT drops "default" from the saved keys. */
export const ADAPTER_NAME = 'default';

export class Replica {
  private constructor(
    readonly config: RunConfig,
    readonly model: Gpt2Model,
    readonly rows: SequenceRow[],
    /** The held-out rows (`evalData`), or none. */
    readonly evalRows: SequenceRow[],
    readonly layers: LoraLinear[],
    readonly step: TrainingStep,
    /** PiSSA only: the initial factors, to save the adapter for the original base weights. */
    private readonly pissaStart: Map<string, InitialFactors>,
  ) {}

  /** Loads model and data, adds LoRA; the step sums gradients with `allReduce`. */
  static async build(config: RunConfig, allReduce: AllReduce): Promise<Replica> {
    const { model, tokenizer } = await loadModel(config.modelDir);
    try {
      const prepared = await prepareRows(config.dataFile, tokenizer, config.rows);
      const fingerprint = rowsFingerprint(prepared.rows);
      if (fingerprint !== config.rowsFingerprint) {
        throw new RunConfigError(
          `${config.dataFile}: this worker's ${prepared.rows.length} rows (${fingerprint}) differ from ` +
            `the coordinator's (${config.rowsFingerprint}): do both read the same file and model tokenizer?`,
        );
      }
      let evalRows: SequenceRow[] = [];
      if (config.evalData) {
        const { file, rowsFingerprint: expected } = config.evalData;
        evalRows = (await prepareRows(file, tokenizer, config.rows, '--eval-data')).rows;
        if (rowsFingerprint(evalRows) !== expected) {
          throw new RunConfigError(
            `${file}: this worker's ${evalRows.length} eval rows differ from the coordinator's: ` +
              'do both read the same file?',
          );
        }
      }
      const { init, targets, ...settings } = config.lora;
      const loraInit = { kind: init } as LoraInit;
      const layers = await addLora(
        model.linears(),
        ADAPTER_NAME,
        settings,
        loraInit,
        targets,
        config.seed,
      );
      const pissaStart = new Map<string, InitialFactors>();
      if (init === 'pissa') {
        for (const layer of layers) {
          const { a, b } = layer.activeAdapter!;
          pissaStart.set(layer.name, {
            a: (await a.data()) as Float32Array,
            b: (await b.data()) as Float32Array,
          });
        }
      }
      const params = TrainableParameters.fromLoraLayers(layers);
      const step = new TrainingStep(
        model,
        params,
        {
          optimizer: config.optimizer,
          schedule: config.schedule,
          maxGradNorm: config.maxGradNorm,
          seed: config.seed,
        },
        allReduce,
      );
      return new Replica(config, model, prepared.rows, evalRows, layers, step, pissaStart);
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

  /** Loss sum and loss tokens of the current adapter on these held-out rows. */
  async evaluate(ids: readonly number[], batchSize: number, onCompute?: ComputeNotice) {
    const rows = ids.map((id) => {
      const row = this.evalRows[id];
      if (row === undefined) {
        throw new RangeError(`eval row ${id} is outside the ${this.evalRows.length} eval rows`);
      }
      return row;
    });
    // A forward pass costs less than a training micro-batch of the same size.
    const quiet = this.step.quietEstimateMs();
    const result = await evaluateLossSums(
      this.model,
      batchesOf(rows, batchSize, this.config.rows.seqLen),
      onCompute && (() => onCompute(quiet)),
    );
    await onCompute?.(0);
    return result;
  }

  /** The adapter as trained (for PiSSA: over the residual base), as checkpoints hold it. */
  private exportRaw(): PeftAdapter {
    const { lora, modelDir } = this.config;
    return exportAdapter(this.layers, ADAPTER_NAME, {
      targetModules: [...new Set(lora.targets)],
      bias: 'none',
      initLoraWeights: lora.init === 'gaussian' ? 'gaussian' : true,
      baseModelNameOrPath: modelDir,
      taskType: 'CAUSAL_LM',
    });
  }

  /**
   * Adds this replica's adapter and AdamW state to a checkpoint folder that
   * the coordinator started (checkpoint.ts); returns the manifest's sha256.
   */
  async writeCheckpoint(tmp: string): Promise<string> {
    const { optimizer } = this.step.snapshot();
    return writeCheckpointTensors(tmp, {
      adapter: this.exportRaw(),
      params: this.step.params,
      optimizer,
    });
  }

  /** Loads parameters and AdamW state from a checkpoint folder (a resumed run's first step). */
  async restore(dir: string): Promise<void> {
    const state = await readTrainerState(dir);
    this.step.restore(await readCheckpointTrainState(dir, this.step.params, state.step));
  }

  /** Writes the PEFT adapter folder; returns adapterManifestSha256 of what was written. */
  async saveAdapter(dir: string): Promise<string> {
    const adapter = this.exportRaw();
    // A PiSSA adapter is saved as a rank-2r LoRA for the original base weights.
    await savePeftAdapter(
      dir,
      this.pissaStart.size > 0 ? pissaToLora(adapter, this.pissaStart) : adapter,
    );
    return adapterManifestSha256(dir);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** sha-256 of a sha256sum-style manifest of the adapter's two files. */
export async function adapterManifestSha256(dir: string): Promise<string> {
  const lines: string[] = [];
  for (const file of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]) {
    const digest = createHash('sha256')
      .update(await readFile(join(dir, file)))
      .digest('hex');
    lines.push(`${digest}  ${file}\n`);
  }
  return createHash('sha256').update(lines.join('')).digest('hex');
}
