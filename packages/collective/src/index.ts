export { RingAllReduce } from './ring.js';
export type {
  RingOptions,
  RingCurve,
  AllReduceOptions,
  RingAlgorithm,
  RingTransport,
} from './options.js';
export { RingError, type Peer } from './links.js';
export {
  generateKeyPair,
  isZ85Key,
  writeKeyPair,
  readKeyPair,
  readPublicKeys,
  resolvePublicKey,
  curveServerOptions,
  curveClientOptions,
  type CurveKeyPair,
  type KeyFiles,
  type CurveServerOptions,
  type CurveClientOptions,
} from './curve.js';
export {
  CurveAuthenticator,
  ZAP_CLOSE_MARGIN_MS,
  type AuthenticatorOptions,
  type ZapRefusal,
} from './zap.js';
export {
  segments,
  ownerOf,
  reduceScatterStep,
  allGatherStep,
  frames,
  type Segment,
  type RingStep,
} from './schedule.js';
