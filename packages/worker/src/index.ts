export {
  type AllReduce,
  type RunOptions,
  type StepConfig,
  type StepResult,
  type TrainState,
  TrainingStep,
  localAllReduce,
} from './step.js';
export { rowsKey } from './rows-key.js';
export { replicaHash, hashHex } from './replica-hash.js';
export { DataError, errorCodeOf } from './data-error.js';
export { StorageError, asStorageError } from './storage-error.js';
export {
  type Packing,
  type PreparedRows,
  type RowOptions,
  batchesOf,
  inputLengths,
  paddedLengths,
  documentSpan,
  prepareRows,
  rowLength,
  rowsFingerprint,
} from './rows.js';
export {
  type LoraInitKind,
  type RunConfig,
  type WireDtypeName,
  WIRE_DTYPE_NAMES,
  WIRE_DTYPE_BYTES,
  RunConfigError,
  decodeRunConfig,
  encodeRunConfig,
  runConfigHash,
} from './run-config.js';
export { ADAPTER_NAME, Replica, resultManifestSha256, splitRows } from './replica.js';
export { copyTokenizerFiles } from './model-files.js';
export { CoordinatorLink, type LinkCurve, UNASSIGNED_RUN } from './coordinator-link.js';
export { type WorkerOptions, runWorker } from './session.js';
export { WORKER_EXIT, WORKER_LOG_PREFIX } from './exit-status.js';
export { type BackendReport, reportBackendFailure } from './backend-report.js';
export { type SigtermWait, waitForCoordinatorOnSigterm } from './sigterm.js';
export {
  type BestModelState,
  type StoredPlateau,
  CHECKPOINTS_DIR,
  CheckpointError,
  type CheckpointContents,
  MANIFEST_FILE,
  OPTIMIZER_FILE,
  STEP_DIR,
  TRAINER_STATE_FILE,
  type TrainerState,
  type VerifiedCheckpoint,
  checkpointName,
  commitCheckpoint,
  isCheckpointInProgress,
  manifestSha256,
  parseTrainerState,
  readCheckpoint,
  readCheckpointTrainState,
  readOptimizerState,
  readTrainerState,
  startCheckpoint,
  verifyCheckpoint,
  writeCheckpoint,
  writeCheckpointTensors,
} from './checkpoint.js';
export {
  CHECKPOINT_FORMAT_VERSION,
  type CheckpointManifest,
  type FoundEntry,
  type ManifestEntry,
  fileProblems,
  manifestText,
  parseManifest,
} from './checkpoint-manifest.js';
