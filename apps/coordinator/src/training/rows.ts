// Dataset rows come from the worker runtime, so the coordinator and every
// worker prepare them with the same code.
export {
  type Packing,
  type PreparedRows,
  type RowOptions,
  batchesOf,
  paddedLengths,
  prepareRows,
  rowLength,
} from '@lorafleet/worker';
