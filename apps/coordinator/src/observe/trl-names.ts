// metrics.jsonl's names as transformers' Trainer and TRL's trainers log the
// same values (the camel-cased project names are the JSON keys; these are
// what a TensorBoard of a Python run shows). A key not listed keeps its name.
export const TRL_NAMES: Readonly<Record<string, string>> = {
  loss: 'loss',
  lr: 'learning_rate',
  gradNorm: 'grad_norm',
  epoch: 'epoch',
  numTokens: 'num_tokens',
  meanTokenAccuracy: 'mean_token_accuracy',
  entropy: 'entropy',
  rewardAccuracy: 'rewards/accuracies',
  rewardMargin: 'rewards/margins',
  rewardChosen: 'rewards/chosen',
  rewardRejected: 'rewards/rejected',
  logpsChosen: 'logps/chosen',
  logpsRejected: 'logps/rejected',
  logitsChosen: 'logits/chosen',
  logitsRejected: 'logits/rejected',
  kl: 'kl',
  nllLoss: 'nll_loss',
  logOddsRatio: 'log_odds_ratio',
  logOddsChosen: 'log_odds_chosen',
};
