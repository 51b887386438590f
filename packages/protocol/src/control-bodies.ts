// One codec per ControlMessage body: `decode` validates a generated (decoded)
// message into the typed view, `encode` maps the typed view back. Field paths
// in errors match the .proto (camelCased), e.g. "welcome.ringEndpoints[2]".
import { lorafleet } from './generated/lorafleet.js';
import type { lorafleet as pb } from './generated/lorafleet.types.js';
import { EnumTable, InvalidField, bytes, finite, list, number, text, u32, u64 } from './fields.js';
import type { ControlBody, ErrorCode, WorkerState } from './messages.js';
import type { WireLimits } from './limits.js';

type Props<K extends ControlBody['case']> = NonNullable<pb.v1.ControlMessage.$Properties[K]>;
type Value<K extends ControlBody['case']> = Extract<ControlBody, { case: K }>['value'];

interface BodyCodec<K extends ControlBody['case']> {
  decode(p: Props<K>, limits: WireLimits): Value<K>;
  encode(v: Value<K>): Props<K>;
}

const { WorkerState: S, ErrorCode: E } = lorafleet.v1;
const workerStates = new EnumTable<WorkerState>(
  new Map([
    [S.WORKER_STATE_UNSPECIFIED, 'unspecified'],
    [S.WORKER_STATE_IDLE, 'idle'],
    [S.WORKER_STATE_COMPUTING, 'computing'],
    [S.WORKER_STATE_REDUCING, 'reducing'],
    [S.WORKER_STATE_UPDATING, 'updating'],
    [S.WORKER_STATE_CHECKPOINTING, 'checkpointing'],
    [S.WORKER_STATE_LOADING, 'loading'],
  ]),
);
const errorCodes = new EnumTable<ErrorCode>(
  new Map([
    [E.ERROR_CODE_UNSPECIFIED, 'unspecified'],
    [E.ERROR_CODE_BAD_MESSAGE, 'bad-message'],
    [E.ERROR_CODE_VERSION_MISMATCH, 'version-mismatch'],
    [E.ERROR_CODE_CONFIG_MISMATCH, 'config-mismatch'],
    [E.ERROR_CODE_REPLICA_DIVERGED, 'replica-diverged'],
    [E.ERROR_CODE_INTERNAL, 'internal'],
    [E.ERROR_CODE_DATA, 'data'],
    [E.ERROR_CODE_STORAGE, 'storage'],
    [E.ERROR_CODE_BACKEND, 'backend'],
  ]),
);

/** A hash of the replica's parameters: sha-512 at most. */
const MAX_HASH_BYTES = 64;
const MAX_CAPABILITIES = 64;
/** A run configuration is paths and hyperparameters: a few kB; 64k leaves room, bounds a bad peer. */
const MAX_RUN_CONFIG_CHARS = 1 << 16;

/** Bodies whose fields all pass through unchanged (no enums, no nested checks on encode). */
const same = <T>(v: T): T => v;

export const bodies: { [K in ControlBody['case']]: BodyCodec<K> } = {
  hello: {
    decode: (p) => ({
      workerId: text(p.workerId, 'hello.workerId', 1, 256),
      host: text(p.host, 'hello.host', 0, 256),
      pid: u32(p.pid ?? 0, 'hello.pid'),
      device: text(p.device, 'hello.device', 0, 256),
      backend: text(p.backend, 'hello.backend', 0, 64),
      capabilities: list(p.capabilities, 'hello.capabilities', MAX_CAPABILITIES).map((c, i) =>
        text(c, `hello.capabilities[${i}]`, 1, 64),
      ),
      dataEndpoint: text(p.dataEndpoint, 'hello.dataEndpoint', 1, 512),
      curvePublicKey: curveKey(p.curvePublicKey, 'hello.curvePublicKey'),
      heartbeatId: text(p.heartbeatId ?? '', 'hello.heartbeatId', 0, 64),
    }),
    encode: same,
  },
  welcome: {
    decode: (p, limits) => ({
      ...ring(p, 'welcome', limits),
      runConfigHash: text(p.runConfigHash, 'welcome.runConfigHash', 0, 256),
      runConfig: text(p.runConfig ?? '', 'welcome.runConfig', 0, MAX_RUN_CONFIG_CHARS),
      generation: u64(p.generation ?? 0, 'welcome.generation'),
      joining: p.joining === true,
    }),
    encode: same,
  },
  stepPlan: {
    decode: (p, limits) => ({
      step: u64(p.step ?? 0, 'stepPlan.step'),
      // Each id is at least one byte on the wire, so the size limit already bounds the count.
      sampleIds: list(p.sampleIds, 'stepPlan.sampleIds', limits.maxControlBytes).map((id, i) =>
        u64(id, `stepPlan.sampleIds[${i}]`),
      ),
      microBatchSize: u32(p.microBatchSize, 'stepPlan.microBatchSize', 1),
      lrReductions: u32(p.lrReductions ?? 0, 'stepPlan.lrReductions'),
    }),
    encode: same,
  },
  stepDone: {
    decode: (p) => {
      if (!p.timings) throw new InvalidField('stepDone.timings is missing');
      return {
        step: u64(p.step ?? 0, 'stepDone.step'),
        // Not finite when the run diverged: carried, so the coordinator can say so.
        lossSum: number(p.lossSum ?? 0, 'stepDone.lossSum'),
        tokenCount: u64(p.tokenCount ?? 0, 'stepDone.tokenCount'),
        timings: {
          computeMs: finite(p.timings.computeMs ?? 0, 'stepDone.timings.computeMs', 0),
          allreduceMs: finite(p.timings.allreduceMs ?? 0, 'stepDone.timings.allreduceMs', 0),
          updateMs: finite(p.timings.updateMs ?? 0, 'stepDone.timings.updateMs', 0),
        },
        // A copy, not a view into the received frame (and a plain Uint8Array, not a Buffer).
        replicaHash: Uint8Array.from(
          bytes(p.replicaHash ?? new Uint8Array(0), 'stepDone.replicaHash', MAX_HASH_BYTES),
        ),
        gradNorm: number(p.gradNorm ?? 0, 'stepDone.gradNorm'),
        nonFiniteParameters: u32(p.nonFiniteParameters ?? 0, 'stepDone.nonFiniteParameters'),
        rewardCorrect: u64(p.rewardCorrect ?? 0, 'stepDone.rewardCorrect'),
        // Not finite when the run diverged, as lossSum.
        rewardChosenSum: number(p.rewardChosenSum ?? 0, 'stepDone.rewardChosenSum'),
        rewardRejectedSum: number(p.rewardRejectedSum ?? 0, 'stepDone.rewardRejectedSum'),
        chosenLogpSum: number(p.chosenLogpSum ?? 0, 'stepDone.chosenLogpSum'),
        rejectedLogpSum: number(p.rejectedLogpSum ?? 0, 'stepDone.rejectedLogpSum'),
        desirableCount: u64(p.desirableCount ?? 0, 'stepDone.desirableCount'),
        kl: number(p.kl ?? 0, 'stepDone.kl'),
        correctTokens: u64(p.correctTokens ?? 0, 'stepDone.correctTokens'),
        entropySum: number(p.entropySum ?? 0, 'stepDone.entropySum'),
        chosenTokens: u64(p.chosenTokens ?? 0, 'stepDone.chosenTokens'),
        rejectedTokens: u64(p.rejectedTokens ?? 0, 'stepDone.rejectedTokens'),
        chosenLogitSum: number(p.chosenLogitSum ?? 0, 'stepDone.chosenLogitSum'),
        rejectedLogitSum: number(p.rejectedLogitSum ?? 0, 'stepDone.rejectedLogitSum'),
        nllPairs: u64(p.nllPairs ?? 0, 'stepDone.nllPairs'),
        nllSum: number(p.nllSum ?? 0, 'stepDone.nllSum'),
        oddsPairs: u64(p.oddsPairs ?? 0, 'stepDone.oddsPairs'),
        logOddsRatioSum: number(p.logOddsRatioSum ?? 0, 'stepDone.logOddsRatioSum'),
        logOddsChosenSum: number(p.logOddsChosenSum ?? 0, 'stepDone.logOddsChosenSum'),
      };
    },
    encode: same,
  },
  commit: {
    decode: (p) => ({ step: u64(p.step ?? 0, 'commit.step') }),
    encode: same,
  },
  abort: {
    decode: (p) => ({
      step: u64(p.step ?? 0, 'abort.step'),
      reason: text(p.reason ?? '', 'abort.reason'),
    }),
    encode: same,
  },
  heartbeat: {
    decode: (p) => ({
      sentAtMs: u64(p.sentAtMs ?? 0, 'heartbeat.sentAtMs'),
      state: workerStates.name(p.state ?? 0, 'heartbeat.state'),
      rssBytes: u64(p.rssBytes ?? 0, 'heartbeat.rssBytes'),
      stepsDone: u64(p.stepsDone ?? 0, 'heartbeat.stepsDone'),
      heartbeatId: text(p.heartbeatId ?? '', 'heartbeat.heartbeatId', 0, 64),
      progress: u64(p.progress ?? 0, 'heartbeat.progress'),
      stalledMs: u32(p.stalledMs ?? 0, 'heartbeat.stalledMs'),
      // A day bounds what a peer can make the coordinator tolerate.
      computeLimitMs: u32(p.computeLimitMs ?? 0, 'heartbeat.computeLimitMs', 0, 86_400_000),
      warmingUp: p.warmingUp === true,
    }),
    encode: (v) => ({
      sentAtMs: v.sentAtMs,
      state: workerStates.number(v.state, 'heartbeat.state'),
      rssBytes: v.rssBytes,
      stepsDone: v.stepsDone,
      heartbeatId: v.heartbeatId,
      progress: v.progress,
      stalledMs: v.stalledMs,
      computeLimitMs: v.computeLimitMs,
      warmingUp: v.warmingUp,
    }),
  },
  checkpointRequest: {
    decode: (p) => ({
      step: u64(p.step ?? 0, 'checkpointRequest.step'),
      path: text(p.path, 'checkpointRequest.path', 1),
      fromCheckpoint: text(p.fromCheckpoint ?? '', 'checkpointRequest.fromCheckpoint', 0),
    }),
    encode: same,
  },
  checkpointDone: {
    decode: (p) => ({
      step: u64(p.step ?? 0, 'checkpointDone.step'),
      path: text(p.path, 'checkpointDone.path', 1),
      manifestSha256: text(p.manifestSha256 ?? '', 'checkpointDone.manifestSha256', 0, 64),
    }),
    encode: same,
  },
  shutdown: {
    decode: (p) => ({ reason: text(p.reason ?? '', 'shutdown.reason') }),
    encode: same,
  },
  error: {
    decode: (p) => ({
      code: errorCodes.name(p.code ?? 0, 'error.code'),
      message: text(p.message ?? '', 'error.message'),
    }),
    encode: (v) => ({ code: errorCodes.number(v.code, 'error.code'), message: v.message }),
  },
  regroup: {
    decode: (p, limits) => ({
      ...ring(p, 'regroup', limits),
      generation: u64(p.generation ?? 0, 'regroup.generation'),
      step: u64(p.step ?? 0, 'regroup.step'),
    }),
    encode: same,
  },
  regrouped: {
    decode: (p) => ({
      generation: u64(p.generation ?? 0, 'regrouped.generation'),
      step: u64(p.step ?? 0, 'regrouped.step'),
      replicaHash: Uint8Array.from(
        bytes(p.replicaHash ?? new Uint8Array(0), 'regrouped.replicaHash', MAX_HASH_BYTES),
      ),
    }),
    encode: same,
  },
  stateRequest: {
    decode: (p) => ({ step: u64(p.step ?? 0, 'stateRequest.step') }),
    encode: same,
  },
  trainerState: {
    decode: (p, limits) => {
      const parts = u32(p.parts, 'trainerState.parts', 1, MAX_STATE_PARTS);
      return {
        step: u64(p.step ?? 0, 'trainerState.step'),
        part: u32(p.part ?? 0, 'trainerState.part', 0, parts - 1),
        parts,
        data: Uint8Array.from(
          bytes(p.data ?? new Uint8Array(0), 'trainerState.data', limits.maxControlBytes),
        ),
        sha256: text(p.sha256, 'trainerState.sha256', 64, 64),
      };
    },
    encode: same,
  },
  evalRequest: {
    decode: (p, limits) => ({
      step: u64(p.step ?? 0, 'evalRequest.step'),
      rowIds: list(p.rowIds, 'evalRequest.rowIds', limits.maxControlBytes).map((id, i) =>
        u64(id, `evalRequest.rowIds[${i}]`),
      ),
      batchSize: u32(p.batchSize, 'evalRequest.batchSize', 1),
      klSumsOnly: p.klSumsOnly ?? false,
      kl: finite(p.kl ?? 0, 'evalRequest.kl', 0),
    }),
    encode: same,
  },
  evalDone: {
    decode: (p) => ({
      step: u64(p.step ?? 0, 'evalDone.step'),
      lossSum: finite(p.lossSum ?? 0, 'evalDone.lossSum', 0),
      tokenCount: u64(p.tokenCount ?? 0, 'evalDone.tokenCount'),
      rewardCorrect: u64(p.rewardCorrect ?? 0, 'evalDone.rewardCorrect'),
      rewardChosenSum: number(p.rewardChosenSum ?? 0, 'evalDone.rewardChosenSum'),
      rewardRejectedSum: number(p.rewardRejectedSum ?? 0, 'evalDone.rewardRejectedSum'),
      chosenLogpSum: number(p.chosenLogpSum ?? 0, 'evalDone.chosenLogpSum'),
      rejectedLogpSum: number(p.rejectedLogpSum ?? 0, 'evalDone.rejectedLogpSum'),
      desirableCount: u64(p.desirableCount ?? 0, 'evalDone.desirableCount'),
      kl: number(p.kl ?? 0, 'evalDone.kl'),
      klSum: number(p.klSum ?? 0, 'evalDone.klSum'),
      klRows: u64(p.klRows ?? 0, 'evalDone.klRows'),
      correctTokens: u64(p.correctTokens ?? 0, 'evalDone.correctTokens'),
      entropySum: number(p.entropySum ?? 0, 'evalDone.entropySum'),
      chosenTokens: u64(p.chosenTokens ?? 0, 'evalDone.chosenTokens'),
      rejectedTokens: u64(p.rejectedTokens ?? 0, 'evalDone.rejectedTokens'),
      chosenLogitSum: number(p.chosenLogitSum ?? 0, 'evalDone.chosenLogitSum'),
      rejectedLogitSum: number(p.rejectedLogitSum ?? 0, 'evalDone.rejectedLogitSum'),
      nllPairs: u64(p.nllPairs ?? 0, 'evalDone.nllPairs'),
      nllSum: number(p.nllSum ?? 0, 'evalDone.nllSum'),
      oddsPairs: u64(p.oddsPairs ?? 0, 'evalDone.oddsPairs'),
      logOddsRatioSum: number(p.logOddsRatioSum ?? 0, 'evalDone.logOddsRatioSum'),
      logOddsChosenSum: number(p.logOddsChosenSum ?? 0, 'evalDone.logOddsChosenSum'),
    }),
    encode: same,
  },
};

/** A trainer state travels in parts of at most STATE_PART_BYTES; 4096 parts bound it at 2 GiB. */
export const STATE_PART_BYTES = 512 << 10;
const MAX_STATE_PARTS = 4096;

/** A CURVE public key in Z85: 40 characters, or '' for none. */
function curveKey(value: string | null | undefined, field: string): string {
  const key = text(value ?? '', field, 0, 40);
  if (key !== '' && !/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/.test(key)) {
    throw new InvalidField(`${field} is not a 40-character Z85 CURVE key`);
  }
  return key;
}

/** The ring fields shared by Welcome and Regroup: rank, world size, endpoints and keys by rank. */
function ring(
  p: {
    rank?: number | null;
    worldSize?: number | null;
    ringEndpoints?: string[] | null;
    ringPublicKeys?: string[] | null;
  },
  name: string,
  limits: WireLimits,
) {
  const worldSize = u32(p.worldSize, `${name}.worldSize`, 1, limits.maxWorldSize);
  const ringEndpoints = list(p.ringEndpoints, `${name}.ringEndpoints`, limits.maxWorldSize);
  if (ringEndpoints.length !== worldSize) {
    throw new InvalidField(
      `${name}.ringEndpoints has ${ringEndpoints.length} entries for worldSize ${worldSize}`,
    );
  }
  const keys = list(p.ringPublicKeys, `${name}.ringPublicKeys`, limits.maxWorldSize);
  if (keys.length !== 0 && keys.length !== worldSize) {
    throw new InvalidField(
      `${name}.ringPublicKeys has ${keys.length} entries for worldSize ${worldSize}`,
    );
  }
  return {
    rank: u32(p.rank ?? 0, `${name}.rank`, 0, worldSize - 1),
    worldSize,
    ringEndpoints: ringEndpoints.map((e, i) => text(e, `${name}.ringEndpoints[${i}]`, 1, 512)),
    ringPublicKeys: keys.map((k, i) => curveKey(k, `${name}.ringPublicKeys[${i}]`)),
  };
}
