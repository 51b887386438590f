// Checkpoints and --resume for `train --workers N`. The replicas are bitwise
// identical, so rank 0's state is everyone's: the coordinator starts the
// checkpoint folder with its own trainer_state.json (step, sampler, tokens),
// asks rank 0 to add the adapter, the AdamW state and the manifest
// (CheckpointRequest), checks the manifest rank 0 reports and every file
// against it, and renames the folder into place. On resume the coordinator
// picks and verifies the checkpoint under the one-worker rules (a damaged one
// is reported and the previous one used); the workers load it themselves,
// verifying it again.
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { SamplerState } from '@lorafleet/data';
import type { BestModelState, StoredPlateau } from '@lorafleet/worker';
import type { TrainOptions } from '../training/train-spec.js';
import {
  CheckpointError,
  type TrainerState,
  commitCheckpoint,
  manifestSha256,
  pruneCheckpoints,
  readCheckpoint,
  resumeCheckpoint,
  startCheckpoint,
} from '../training/checkpoint.js';
import {
  type ResumePoint,
  configHash,
  modelFingerprint,
  pickResumePoint,
  trainingConfig,
} from '../training/resume.js';
import { FleetError, MembersLost, type WorkerFleet } from './fleet.js';
import type { RunPlan } from './run-plan.js';

/** Where a run starts: step 0, or a checkpoint's step, sampler and token count. */
export interface StartPoint {
  step: number;
  sampler: SamplerState | null;
  tokensSeen: number;
  resumed: ResumePoint | null;
  /** The checkpoint's best evaluation so far (--load-best-model-at-end, --early-stopping-patience). */
  bestModel?: BestModelState;
  /** The checkpoint's ReduceLROnPlateau state (--schedule reduce_lr_on_plateau). */
  lrPlateau?: StoredPlateau;
}

/** The options that change the math, hashed into every checkpoint (the one-worker rules). */
export async function mathConfig(o: TrainOptions, plan: RunPlan): Promise<Record<string, unknown>> {
  return trainingConfig(o, {
    rows: plan.config.rowsFingerprint,
    model: await modelFingerprint(plan.config.modelDir),
  });
}

/**
 * With --resume: the verified checkpoint to continue from, also written into
 * the RunConfig (absolute, as workers may run elsewhere) for every worker.
 */
export async function resumePoint(
  o: TrainOptions,
  plan: RunPlan,
  config: Record<string, unknown>,
  warn: (line: string) => void,
): Promise<StartPoint> {
  const from = o.resume;
  if (!from) return { step: 0, sampler: null, tokensSeen: 0, resumed: null };
  const point = await pickResumePoint(from, {
    config,
    steps: plan.steps,
    schedule: plan.config.schedule,
    warn,
  });
  plan.config.resumeFrom = resolve(point.dir);
  const { bestModel, lrPlateau } = point.checkpoint.state;
  return {
    ...{ step: point.step, sampler: point.sampler, tokensSeen: point.tokensSeen, resumed: point },
    ...(bestModel ? { bestModel } : {}),
    ...(lrPlateau ? { lrPlateau } : {}),
  };
}

export class FleetCheckpointer {
  constructor(
    private readonly fleet: WorkerFleet,
    private readonly out: string,
    private readonly plan: RunPlan,
    private readonly config: Record<string, unknown>,
    private readonly keep: number,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Writes OUT/checkpoints/step-NNNNNN through rank 0; returns its path. A
   * write that fails (a full disk: rank 0 reports a storage error) stops the
   * run: the partial folder is removed and the error names the last good
   * checkpoint to --resume from. A lost worker is left to recovery, which
   * writes the checkpoint again. `best`: the best evaluation so far, stored
   * with it; `keepStep`: a checkpoint that pruning must spare (the best one's);
   * `lrPlateau`: ReduceLROnPlateau's state, stored with it.
   */
  async save(
    step: number,
    sampler: SamplerState,
    tokensSeen: number,
    best?: { state: BestModelState | undefined; keepStep: number | undefined },
    lrPlateau?: StoredPlateau,
  ): Promise<string> {
    let tmp: string | undefined;
    try {
      const state = this.trainerState(step, sampler, tokensSeen);
      if (best?.state) state.bestModel = best.state;
      if (lrPlateau) state.lrPlateau = lrPlateau;
      tmp = resolve(await startCheckpoint(this.out, state));
      return await this.writeThroughRank0(tmp, step, best?.keepStep);
    } catch (error) {
      if (error instanceof MembersLost) throw error;
      if (tmp) await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw new FleetError(
        `the checkpoint of step ${step} was not written (${(error as Error).message}); ` +
          (await lastGoodCheckpoint(this.out)),
      );
    }
  }

  private trainerState(step: number, sampler: SamplerState, tokensSeen: number): TrainerState {
    const { seed } = this.plan.config;
    return {
      formatVersion: 1,
      step,
      epoch: step / this.plan.sampler.stepsPerEpoch,
      sampler,
      seed,
      configHash: configHash(this.config),
      config: this.config,
      totalSteps: this.plan.steps,
      tokensSeen,
      rng: { kind: 'derived', seed, step },
    };
  }

  /** Rank 0 adds the tensors and the manifest to `tmp`; checked, it is renamed into place. */
  private async writeThroughRank0(tmp: string, step: number, keepStep?: number): Promise<string> {
    const rank0 = this.fleet.memberOf(0);
    await this.fleet.send(rank0, {
      case: 'checkpointRequest',
      value: { step, path: tmp, fromCheckpoint: '' },
    });
    const [done] = await this.fleet.collect('checkpointDone', this.timeoutMs, [rank0]);
    if (done!.step !== step || done!.manifestSha256 !== (await manifestSha256(tmp))) {
      throw new FleetError(
        `${tmp}: the checkpoint on disk differs from what rank 0 reports writing for step ${step}`,
      );
    }
    await readCheckpoint(tmp).catch((err: unknown) => {
      if (!(err instanceof CheckpointError)) throw err;
      throw new FleetError(
        `the checkpoint rank 0 wrote for step ${step} does not verify: ${err.message}`,
      );
    });
    // Only now, with the new checkpoint complete and in place, may older ones go.
    const final = await commitCheckpoint(this.out, step);
    await pruneCheckpoints(this.out, this.keep, step, keepStep);
    return final;
  }
}

/** What a stopped run can continue from: the newest checkpoint under `out` that verifies. */
async function lastGoodCheckpoint(out: string): Promise<string> {
  try {
    const { dir, state } = await resumeCheckpoint(out, () => undefined);
    return (
      `the last good checkpoint is ${dir} (step ${state.step}): free some space, ` +
      `then continue with the same command and --resume ${out}`
    );
  } catch {
    return 'no checkpoint was written before it: free some space and start the run again';
  }
}
