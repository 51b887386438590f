// @lorafleet/data: datasets for causal-LM fine-tuning, packing, the
// deterministic sampler, its shards and the sample ledger. Plain TypeScript +
// node: built-ins.

export {
  type TextTokenizer,
  type TokenizedExample,
  type LossScope,
  DEFAULT_LOSS_SCOPE,
  IGNORE_INDEX,
  tokenizeText,
  tokenizePromptCompletion,
  exampleFromIds,
} from './tokenizer.js';
export { type ChatFormat, type ChatMessage, parseMessages, tokenizeChat } from './chat.js';
export {
  type Problem,
  type BadLinePolicy,
  type ReadSummary,
  type ReadResult,
  DEFAULT_MAX_BAD_FRACTION,
  DEFAULT_REPORT_FIRST,
  DatasetError,
  ProblemLog,
  formatProblem,
} from './problems.js';
export { type JsonlOptions, readJsonl, readLines, parseJsonlLine } from './jsonl.js';
export {
  type SourcedExamples,
  type UntrainableDrop,
  dropUntrainable,
  firstTrainedPosition,
} from './untrainable.js';
export { type CsvRecord, parseCsv } from './csv.js';
export {
  type CsvColumns,
  type CsvTable,
  type ReferenceGroup,
  readCsv,
  readCsvTable,
  columnIndex,
  groupReferences,
  readReferenceGroups,
} from './csv-dataset.js';
export { compileTemplate, renderTemplate, templateFields } from './template.js';
export { readText } from './text.js';
export {
  type PreferenceRead,
  type PreferenceRows,
  preferenceRows,
  readPreferenceJsonl,
} from './preference.js';
export { type PreferencePair, implicitPrompt, parsePreferenceLine } from './preference-line.js';
export {
  type UnpairedExample,
  type UnpairedRead,
  type UnpairedRows,
  UNPAIR_BLOCK,
  parsePairAsUnpaired,
  parseUnpairedLine,
  readUnpairedJsonl,
  unpairedRows,
} from './unpaired.js';
export { type DatasetFormat, type DatasetOptions, datasetFormat, readDataset } from './dataset.js';
export {
  type SequenceRow,
  type PaddedRow,
  type PackRemainder,
  type TruncationMode,
  keepEnds,
  pack,
  padOrTruncate,
  padExamples,
} from './pack.js';
export { BEST_FIT_BLOCK, type BestFitRows, type PackingStrategy, packBestFit } from './best-fit.js';
export {
  type Batch,
  PAD_MULTIPLE,
  collate,
  lossTokenCount,
  padHalvesToLongest,
  padToLongest,
  paddingFree,
  labelledLength,
} from './batch.js';
export { type SplitOptions, splitIds, splitTrainValidation } from './split.js';
export { Mulberry32, checkSeed, mixSeed, permutation, shuffleInPlace } from './random.js';
export {
  type SamplerConfig,
  type SamplerState,
  type PlannedBatch,
  type SamplingStrategy,
  SAMPLER_START,
  GlobalBatchSampler,
} from './sampler.js';
export { lengthGroupedOrder, megabatchMultiple } from './length-grouped.js';
export { shard, shardBounds } from './shard.js';
export {
  type AuditOptions,
  type EpochAudit,
  type LedgerAudit,
  type LedgerEntry,
  LEDGER_FILE,
  LedgerError,
  SampleLedger,
  auditLedger,
} from './ledger.js';
