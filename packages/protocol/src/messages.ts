// The validated, typed view of proto/lorafleet/v1/*.proto that the rest of the
// project sees. Field names are the generated ones (camelCase); uint64 fields
// are plain numbers, checked to be safe integers; enums are string unions.
// test/schema.test.ts fails when these drift from the generated code.

export type WorkerState =
  'unspecified' | 'idle' | 'computing' | 'reducing' | 'updating' | 'checkpointing' | 'loading';

export type ErrorCode =
  | 'unspecified'
  | 'bad-message'
  | 'version-mismatch'
  | 'config-mismatch'
  | 'replica-diverged'
  | 'internal'
  | 'data'
  | 'storage'
  | 'backend';

/** Worker -> coordinator, first message after connecting. */
export interface Hello {
  workerId: string;
  host: string;
  pid: number;
  device: string;
  backend: string;
  capabilities: string[];
  /** Where this worker's ring socket listens; the coordinator lists it in Welcome. */
  dataEndpoint: string;
  /** The worker's CURVE public key (Z85, 40 characters); '' without CURVE. */
  curvePublicKey: string;
  /** A random id of this session that its heartbeats carry (they leave from a socket of their own); '' or absent: none. */
  heartbeatId?: string;
}

/** Coordinator -> worker: its place in the ring. */
export interface Welcome {
  rank: number;
  worldSize: number;
  /** Data-plane endpoint of every rank, indexed by rank. */
  ringEndpoints: string[];
  runConfigHash: string;
  /** The run configuration as JSON; its schema is the worker runtime's (RunConfig). */
  runConfig: string;
  /** 0 at the start, +1 each time the ring re-forms. */
  generation: number;
  /** CURVE public key of every rank; empty without CURVE. */
  ringPublicKeys: string[];
  /** A worker joining a running job: ready, then TrainerState and Regroup before training. */
  joining: boolean;
}

export interface StepPlan {
  step: number;
  sampleIds: number[];
  microBatchSize: number;
  /** --schedule reduce_lr_on_plateau: the reductions the evaluations so far made (0 otherwise). */
  lrReductions: number;
}

export interface StepTimings {
  computeMs: number;
  allreduceMs: number;
  updateMs: number;
}

export interface StepDone {
  step: number;
  lossSum: number;
  tokenCount: number;
  timings: StepTimings;
  replicaHash: Uint8Array;
  /** Norm of the reduced gradient before clipping; NaN or infinite when the update was skipped. */
  gradNorm: number;
  /** Parameters that are NaN or infinite after the update (a diverged run). */
  nonFiniteParameters: number;
  /**
   * A preference objective (0 otherwise): this worker's pairs whose chosen reward exceeded the
   * rejected one's as it trained on them, and its summed chosen and rejected rewards.
   */
  rewardCorrect: number;
  rewardChosenSum: number;
  rewardRejectedSum: number;
  /** A preference objective (0 otherwise): the summed policy log-probabilities its loss compares. */
  chosenLogpSum: number;
  rejectedLogpSum: number;
  /**
   * KTO (0 otherwise): this worker's desirable examples (the other fields then sum over the
   * desirable and the undesirable ones), and the step's KL estimate (the same on every worker).
   */
  desirableCount: number;
  kl: number;
  /**
   * The token loss: labelled tokens the argmax predicts, and their summed entropy (TRL's
   * mean_token_accuracy and entropy, times tokenCount). DPO: the chosen responses' tokens the
   * argmax predicts, and the entropy summed over both responses' tokens. 0 otherwise.
   */
  correctTokens: number;
  entropySum: number;
  /**
   * DPO (0 otherwise): the responses' labelled tokens, chosen and rejected, and each side's
   * summed mean-over-vocabulary logits (TRL's logits/chosen and logits/rejected, as sums).
   */
  chosenTokens: number;
  rejectedTokens: number;
  chosenLogitSum: number;
  rejectedLogitSum: number;
  /**
   * ORPO, and SimPO and CPO with an NLL weight (0 otherwise): the pairs whose loss has the NLL
   * term and its sum before the weight (TRL's nll_loss); ORPO's pairs and their summed log
   * sigmoid of the log odds ratio and log odds ratio (log_odds_ratio, log_odds_chosen).
   */
  nllPairs: number;
  nllSum: number;
  oddsPairs: number;
  logOddsRatioSum: number;
  logOddsChosenSum: number;
}

export interface Commit {
  step: number;
}

export interface Abort {
  step: number;
  reason: string;
}

export interface Heartbeat {
  sentAtMs: number;
  state: WorkerState;
  /** Worker -> coordinator: resident memory of the process (0 from the coordinator). */
  rssBytes: number;
  /** Worker -> coordinator: committed steps of its replica. */
  stepsDone: number;
  /** Worker -> coordinator: the Hello's heartbeatId (heartbeats leave from a socket of their own). */
  heartbeatId: string;
  /** Worker -> coordinator: bumped by the computation before and after each micro-batch. */
  progress: number;
  /** Worker -> coordinator, while a micro-batch computes (else 0): how long progress has not moved. */
  stalledMs: number;
  /** Worker -> coordinator, while a micro-batch computes (else 0): its own limit for one micro-batch. */
  computeLimitMs: number;
  /** Worker -> coordinator: computing its first micro-batch (no measurement yet; no --step-timeout). */
  warmingUp: boolean;
}

/** Coordinator -> every member at a step boundary: the ring re-forms. */
export interface Regroup {
  generation: number;
  rank: number;
  worldSize: number;
  ringEndpoints: string[];
  ringPublicKeys: string[];
  /** Committed steps every member must be at. */
  step: number;
}

/** Worker -> coordinator: bound to the new ring, holding this replica. */
export interface Regrouped {
  generation: number;
  step: number;
  replicaHash: Uint8Array;
}

/** Coordinator -> one worker: send your trainer state at `step`. */
export interface StateRequest {
  step: number;
}

/** One part of a serialized trainer state (adapter + optimizer); sha256 is of all parts. */
export interface TrainerState {
  step: number;
  part: number;
  parts: number;
  data: Uint8Array;
  sha256: string;
}

export interface CheckpointRequest {
  step: number;
  path: string;
  /** The result only: the adapter of this checkpoint folder instead of the replica's ('' for the replica's). */
  fromCheckpoint: string;
}

export interface CheckpointDone {
  step: number;
  path: string;
  manifestSha256: string;
}

export interface Shutdown {
  reason: string;
}

export interface ControlError {
  code: ErrorCode;
  message: string;
}

/** Coordinator -> ring member: the held-out loss on these eval rows (its shard). */
export interface EvalRequest {
  step: number;
  rowIds: number[];
  batchSize: number;
  /** KTO's first round: the shard's KL sums only (EvalDone.klSum, klRows). */
  klSumsOnly: boolean;
  /** KTO's second round: the held-out set's KL estimate, which the loss reads (0 otherwise). */
  kl: number;
}

/** Worker -> coordinator: loss sum and loss tokens over its eval shard. */
export interface EvalDone {
  step: number;
  /** The loss over tokenCount units: tokens, or preference pairs (--objective dpo, orpo, simpo or cpo). */
  lossSum: number;
  tokenCount: number;
  /** A preference objective (0 otherwise): pairs whose chosen reward beats the rejected one's. */
  rewardCorrect: number;
  /** A preference objective (0 otherwise): summed rewards and compared log-probabilities, chosen and rejected. */
  rewardChosenSum: number;
  rewardRejectedSum: number;
  chosenLogpSum: number;
  rejectedLogpSum: number;
  /** KTO (0 otherwise): the shard's desirable examples, and the KL over the whole held-out set. */
  desirableCount: number;
  kl: number;
  /** KTO's first round (0 otherwise): the shard's summed KL log-ratio and its KL completions. */
  klSum: number;
  klRows: number;
  /** The token loss and DPO (0 otherwise), as StepDone's over the held-out shard. */
  correctTokens: number;
  entropySum: number;
  chosenTokens: number;
  rejectedTokens: number;
  chosenLogitSum: number;
  rejectedLogitSum: number;
  /** ORPO, SimPO and CPO (0 otherwise), as StepDone's over the held-out shard. */
  nllPairs: number;
  nllSum: number;
  oddsPairs: number;
  logOddsRatioSum: number;
  logOddsChosenSum: number;
}

/** The oneof `body`: `case` is the generated field name, `value` its message. */
export type ControlBody =
  | { case: 'hello'; value: Hello }
  | { case: 'welcome'; value: Welcome }
  | { case: 'stepPlan'; value: StepPlan }
  | { case: 'stepDone'; value: StepDone }
  | { case: 'commit'; value: Commit }
  | { case: 'abort'; value: Abort }
  | { case: 'heartbeat'; value: Heartbeat }
  | { case: 'checkpointRequest'; value: CheckpointRequest }
  | { case: 'checkpointDone'; value: CheckpointDone }
  | { case: 'shutdown'; value: Shutdown }
  | { case: 'error'; value: ControlError }
  | { case: 'regroup'; value: Regroup }
  | { case: 'regrouped'; value: Regrouped }
  | { case: 'stateRequest'; value: StateRequest }
  | { case: 'trainerState'; value: TrainerState }
  | { case: 'evalRequest'; value: EvalRequest }
  | { case: 'evalDone'; value: EvalDone };

export interface ControlMessage {
  protocolVersion: number;
  runId: string;
  body: ControlBody;
}

/** A ring's two phases, or the two-rank exchange (each rank sends its whole buffer). */
export type Phase = 'reduce-scatter' | 'all-gather' | 'exchange';

export type WireDtype = 'f32' | 'f16' | 'bf16';

/** One data-plane frame: (runId, step, phase, index) name the ring exchange it belongs to. */
/** The header frame of a chunk message, field for field as in data.proto. */
export interface ChunkHeader {
  runId: string;
  step: number;
  phase: Phase;
  /** Ring step within the phase, 0 .. worldSize - 2 (0 for an exchange). */
  index: number;
  senderRank: number;
  dtype: WireDtype;
  /** Which segment of the reduced buffer. */
  segment: number;
  /** Element offset of this piece within the segment. */
  offset: number;
  /** The ring's membership generation (0 for a ring that never re-formed). */
  generation: number;
  /** Bytes in the payload frame. */
  payloadBytes: number;
  /** CRC-32 of the header bytes before it; always sent, always checked. */
  checksum?: number;
  /** CRC-32 of the payload frame; undefined when the sender did not compute one. */
  payloadChecksum?: number;
}

/** One piece of a ring step: the header's fields plus the payload (the message's second frame). */
export interface Chunk extends Omit<ChunkHeader, 'payloadBytes' | 'checksum'> {
  /** Little-endian elements of `dtype`. */
  payload: Uint8Array;
}
