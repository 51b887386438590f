// What a training run tells its observers, one typed record per thing that
// happened: the coordinator appends them to OUT/events.jsonl and streams them
// to the dashboard (GET /api/events), which folds them into its page. The
// file is the contract, so both sides import these types from here; this
// package holds types only (no code), so the dashboard's bundle gains nothing.
//
// A new event type: add it to RunEvent; the compiler then asks the dashboard
// (run.ts's fold and its panels' `touches`) to handle it.

/** Facts of the run, known before the first step. */
export interface RunFacts {
  runId: string;
  model: string;
  /** 'lora' or 'full'. */
  mode: string;
  totalParameters: number;
  trainableParameters: number;
  lora: { r: number; alpha: number; dropout: number; targets: string[] } | null;
  backend: string;
  workers: number;
  steps: number;
  /** Rows per step and tokens per row (a preference row holds two sequences of seqLen). */
  batchSize: number;
  seqLen: number;
  /**
   * What a step's `tokens` (and tokensPerSecond) count, the loss's unit:
   * labelled tokens, preference pairs (--objective dpo, orpo, simpo or cpo),
   * or KTO's unpaired examples (--objective kto). Absent: tokens.
   */
  lossUnit?: 'tokens' | 'pairs' | 'examples';
  /**
   * Bytes each worker sends per step in the ring all-reduce of the trainable
   * parameters' gradients, and what the same all-reduce of every parameter
   * (full fine-tuning) would send: 2 (N-1)/N x 4 bytes x parameters.
   */
  wireBytesPerStep: number;
  fullFinetuneWireBytesPerStep: number;
}

export type WorkerStatus = 'starting' | 'ready' | 'training' | 'lost' | 'left';

export interface WorkerInfo {
  rank: number;
  workerId: string;
  host: string;
  pid: number;
  device: string;
  backend: string;
  status: WorkerStatus;
  /** Epoch milliseconds of the last message from it (0: none yet). */
  lastHeartbeatMs: number;
  /** Resident memory of its process, bytes (0: unknown). */
  rssBytes: number;
  /** Its last step, split: compute, all-reduce, and waiting (the step's wall time minus both and the update). */
  computeMs: number;
  allReduceMs: number;
  waitMs: number;
  /** The rank it sends to in the ring (itself when alone). */
  ringNext: number;
}

export type RunEvent =
  | { type: 'run'; time: number; facts: RunFacts }
  | {
      type: 'step';
      time: number;
      step: number;
      epoch: number;
      loss: number;
      lr: number;
      tokens: number;
      tokensPerSecond: number;
      gradNorm: number;
      seconds: number;
      /**
       * A preference objective: the share of the step's pairs whose chosen reward beat the
       * rejected one's as it trained on them, and the mean margin (TRL's rewards/accuracies
       * and rewards/margins in training).
       */
      rewardAccuracy?: number;
      rewardMargin?: number;
      /** KTO: the step's KL estimate (TRL's kl; its rewardMargin is rewards/margins). */
      kl?: number;
      /**
       * The token loss: the share of the step's labelled tokens its logits' argmax predicts,
       * and their mean entropy in nats (TRL's SFTTrainer mean_token_accuracy and entropy).
       * DPO: the same over its responses' tokens (the accuracy over the chosen ones); KTO: the
       * entropy over its completions' tokens.
       */
      meanTokenAccuracy?: number;
      entropy?: number;
    }
  | {
      type: 'eval';
      time: number;
      step: number;
      loss: number;
      /** A preference objective: the share of held-out pairs whose chosen reward beats the rejected one's. */
      rewardAccuracy?: number;
      /** KTO: the held-out mean desirable - undesirable reward, and the set's KL estimate. */
      rewardMargin?: number;
      kl?: number;
      /** The token loss and DPO: TRL's eval_mean_token_accuracy and eval_entropy. */
      meanTokenAccuracy?: number;
      entropy?: number;
    }
  | { type: 'workers'; time: number; generation: number; workers: WorkerInfo[] }
  | { type: 'checkpoint'; time: number; step: number; path: string }
  | { type: 'log'; time: number; level: 'info' | 'warn' | 'error'; message: string }
  | { type: 'end'; time: number; status: 'finished' | 'interrupted' | 'failed'; message: string };

/** A RunEvent before it is stamped with the time. */
export type RunEventInit = RunEvent extends infer E
  ? E extends RunEvent
    ? Omit<E, 'time'> & { time?: number }
    : never
  : never;

/** An adapter on disk that can be downloaded (GET /api/state's `downloads`). */
export interface Download {
  /** "step-000040" or "adapter". */
  name: string;
  /** The checkpoint's step; null for the final adapter. */
  step: number | null;
  files: string[];
}
