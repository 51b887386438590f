export { RingAllReduce } from './ring.js';
export type { RingOptions, AllReduceOptions } from './options.js';
export { RingError, type Peer } from './links.js';
export {
  segments,
  ownerOf,
  reduceScatterStep,
  allGatherStep,
  frames,
  type Segment,
  type RingStep,
} from './schedule.js';
