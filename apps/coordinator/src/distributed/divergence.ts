// A diverged run is a failure, never a result (#18): a non-finite loss, a
// parameter that is NaN or infinite after an update, or more skipped updates
// (non-finite gradients) than --max-skipped-steps allows stop the run with
// exit 1. The step is aborted, so the replicas keep their last finite state;
// no adapter is written, and the checkpoints already on disk stay.
import type { StepDone } from '@lorafleet/protocol';
import type { RunConfig } from '@lorafleet/worker';

export class TrainingDiverged extends Error {
  override name = 'TrainingDiverged';
}

/** The LoRA scaling the replicas use: alpha / r, or alpha / sqrt(r) with rsLoRA. */
function scaling(config: RunConfig): number {
  const { alpha, r, rslora } = config.lora;
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** What to look at first when a run diverges, from its own settings. */
export function likelyCause(config: RunConfig): string {
  const lora =
    config.mode === 'lora' ? ` or the LoRA scaling (alpha / r = ${scaling(config)})` : '';
  return `the learning rate (--lr ${config.optimizer.lr})${lora} is likely too high: lower --lr${lora ? ' (or --lora-alpha)' : ''}`;
}

/** Why this step's reports show divergence, or null when they do not. */
export function divergence(reports: readonly StepDone[]): string | null {
  const tokens = reports.reduce((n, r) => n + r.tokenCount, 0);
  const loss = reports.reduce((s, r) => s + r.lossSum, 0) / tokens;
  const nonFinite = reports[0]!.nonFiniteParameters;
  if (nonFinite > 0) return `${nonFinite} parameters are NaN or infinite after the update`;
  if (!Number.isFinite(loss)) return `the training loss is ${loss}`;
  return null;
}

/** The error that stops a diverged run: the step, what happened, the likely cause, what is kept. */
export function diverged(
  step: number,
  what: string,
  cause: string,
  lastCheckpoint: string | null,
): TrainingDiverged {
  const kept = lastCheckpoint
    ? `the last checkpoint (${lastCheckpoint}) is kept`
    : 'no checkpoint was written before it (--checkpoint-every K keeps some)';
  return new TrainingDiverged(
    `step ${step}: the run diverged: ${what}; ${cause}. No adapter was written; ${kept}`,
  );
}
