// TRL's logs of a step or of an evaluation, from the sums every worker
// reports (StepDone and EvalDone carry the same fields): the means over the
// global batch's pairs (with DPO, its responses' token metrics over their
// tokens; with ORPO, SimPO and CPO, their NLL term and ORPO's log odds), over
// its desirable and undesirable examples with KTO's KL
// estimate, or for the token loss over its labelled tokens (SFTTrainer's
// mean_token_accuracy and entropy). Workers add sums, the
// coordinator divides, so N workers report what one would.
import {
  type KtoLogs,
  type LossUnit,
  type PairEvaluation,
  ktoLogs,
  pairMetrics,
} from '@lorafleet/models';
import type { StepDone } from '@lorafleet/protocol';

/** The fields of StepDone (and EvalDone) the logs are made of. */
export type StatReport = Pick<
  StepDone,
  | 'rewardCorrect'
  | 'rewardChosenSum'
  | 'rewardRejectedSum'
  | 'chosenLogpSum'
  | 'rejectedLogpSum'
  | 'desirableCount'
  | 'kl'
  | 'correctTokens'
  | 'entropySum'
  | 'chosenTokens'
  | 'rejectedTokens'
  | 'chosenLogitSum'
  | 'rejectedLogitSum'
  | 'nllPairs'
  | 'nllSum'
  | 'oddsPairs'
  | 'logOddsRatioSum'
  | 'logOddsChosenSum'
>;

/** SFTTrainer's token metrics: the share of labelled tokens the argmax predicts, and their mean entropy (nats). */
export interface TokenLogs {
  meanTokenAccuracy: number;
  entropy: number;
}

/** TRL's rewards/* and logps/* means over the pairs (rewards/accuracies included). */
export type PairLogs = Omit<PairEvaluation, 'loss' | 'pairs'>;

/** The reports' logs over `units` loss units: pairs', KTO's, or the token loss's. */
export function feedbackLogs(
  unit: LossUnit,
  reports: readonly StatReport[],
  units: number,
): { pairs?: PairLogs; kto?: KtoLogs; sft?: TokenLogs } {
  const sum = (f: (r: StatReport) => number) => reports.reduce((s, r) => s + f(r), 0);
  if (unit === 'tokens') {
    const meanTokenAccuracy = sum((r) => r.correctTokens) / units;
    return { sft: { meanTokenAccuracy, entropy: sum((r) => r.entropySum) / units } };
  }
  const sums = {
    chosenSum: sum((r) => r.rewardChosenSum),
    rejectedSum: sum((r) => r.rewardRejectedSum),
    chosenLogpSum: sum((r) => r.chosenLogpSum),
    rejectedLogpSum: sum((r) => r.rejectedLogpSum),
  };
  // DPO's token metrics of the responses, KTO's of its completions (zeros for the other
  // preference objectives, which log none)
  const responses = {
    chosenTokens: sum((r) => r.chosenTokens),
    rejectedTokens: sum((r) => r.rejectedTokens),
    entropySum: sum((r) => r.entropySum),
    chosenLogitSum: sum((r) => r.chosenLogitSum),
    rejectedLogitSum: sum((r) => r.rejectedLogitSum),
  };
  if (unit === 'examples') {
    // Every worker holds the same estimate (all-reduced, or over the whole held-out set).
    const kl = reports[0]?.kl ?? 0;
    const desirable = sum((r) => r.desirableCount);
    return { kto: ktoLogs({ ...sums, ...responses, desirable }, units, kl) };
  }
  const correct = sum((r) => r.rewardCorrect);
  const chosenCorrectTokens = sum((r) => r.correctTokens);
  // ORPO's, SimPO's and CPO's NLL term and ORPO's log odds (zeros for DPO, which logs none)
  const nll = {
    nllPairs: sum((r) => r.nllPairs),
    nllSum: sum((r) => r.nllSum),
    oddsPairs: sum((r) => r.oddsPairs),
    logOddsRatioSum: sum((r) => r.logOddsRatioSum),
    logOddsChosenSum: sum((r) => r.logOddsChosenSum),
  };
  const {
    loss: _,
    pairs: __,
    ...means
  } = pairMetrics({
    lossSum: 0,
    pairs: units,
    correct,
    ...sums,
    ...responses,
    ...nll,
    chosenCorrectTokens,
  });
  return { pairs: means };
}
