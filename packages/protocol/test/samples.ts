// One valid message of every kind, shared by the round-trip and fuzz tests.
import type { Chunk, ControlBody, ControlMessageInit } from '../src/index.js';

export const RUN = 'run-2026-11-26';

export const bodies: ControlBody[] = [
  {
    case: 'hello',
    value: {
      workerId: 'w-0',
      host: 'gpu-01',
      pid: 4242,
      device: 'H200',
      backend: 'webgpu',
      capabilities: ['fp16-wire', 'bf16-wire'],
      dataEndpoint: 'tcp://10.0.0.1:5000',
      curvePublicKey: 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7',
      heartbeatId: '9f3c2a7e5b1d4c8a9f3c2a7e5b1d4c8a',
    },
  },
  {
    case: 'welcome',
    value: {
      rank: 1,
      worldSize: 3,
      ringEndpoints: ['tcp://10.0.0.1:5000', 'tcp://10.0.0.2:5000', 'ipc:///tmp/r2'],
      runConfigHash: 'sha256:abc',
      runConfig: '{"modelDir":"models/tiny","seed":0}',
      generation: 2,
      ringPublicKeys: [],
      joining: true,
    },
  },
  {
    case: 'stepPlan',
    value: { step: 7, sampleIds: [0, 5, 2 ** 40, 2 ** 53 - 1], microBatchSize: 4, lrReductions: 2 },
  },
  {
    case: 'stepDone',
    value: {
      step: 2 ** 33,
      lossSum: 123.5,
      tokenCount: 4096,
      timings: { computeMs: 51.5, allreduceMs: 3.25, updateMs: 0.5 },
      replicaHash: new Uint8Array(32).fill(0xab),
      gradNorm: 0.75,
      nonFiniteParameters: 0,
      rewardCorrect: 3,
      rewardChosenSum: -1.25,
      rewardRejectedSum: -4.5,
      chosenLogpSum: -31.25,
      rejectedLogpSum: -47.5,
      desirableCount: 0,
      kl: 0,
      correctTokens: 1201,
      entropySum: 5012.25,
    },
  },
  {
    case: 'stepDone',
    value: {
      step: 3,
      lossSum: 2.75,
      tokenCount: 6,
      timings: { computeMs: 12, allreduceMs: 1.5, updateMs: 0.25 },
      replicaHash: new Uint8Array(32).fill(0x17),
      gradNorm: 0.5,
      nonFiniteParameters: 0,
      rewardCorrect: 0,
      rewardChosenSum: 0.625,
      rewardRejectedSum: -0.25,
      chosenLogpSum: -40.5,
      rejectedLogpSum: -52.25,
      desirableCount: 4,
      kl: 0.125,
      correctTokens: 0,
      entropySum: 0,
    },
  },
  { case: 'commit', value: { step: 7 } },
  { case: 'abort', value: { step: 8, reason: 'rank 2 missed 3 heartbeats' } },
  {
    case: 'heartbeat',
    value: {
      sentAtMs: 1_764_000_000_000,
      state: 'reducing',
      rssBytes: 2 ** 33,
      stepsDone: 12,
      heartbeatId: '9f3c2a7e5b1d4c8a9f3c2a7e5b1d4c8a',
      progress: 57,
      stalledMs: 1500,
      computeLimitMs: 60_000,
      warmingUp: true,
    },
  },
  {
    case: 'checkpointRequest',
    value: { step: 100, path: 'runs/x/adapter', fromCheckpoint: 'runs/x/checkpoints/step-000080' },
  },
  {
    case: 'checkpointDone',
    value: { step: 100, path: 'runs/x/checkpoint-100', manifestSha256: 'f'.repeat(64) },
  },
  { case: 'shutdown', value: { reason: 'training finished' } },
  { case: 'error', value: { code: 'replica-diverged', message: 'rank 1 hash differs' } },
  {
    case: 'regroup',
    value: {
      generation: 3,
      rank: 0,
      worldSize: 2,
      ringEndpoints: ['tcp://10.0.0.1:5000', 'tcp://10.0.0.3:5000'],
      ringPublicKeys: [
        'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7',
        'Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID',
      ],
      step: 41,
    },
  },
  {
    case: 'regrouped',
    value: { generation: 3, step: 41, replicaHash: new Uint8Array(32).fill(7) },
  },
  { case: 'stateRequest', value: { step: 41 } },
  {
    case: 'trainerState',
    value: {
      step: 41,
      part: 1,
      parts: 3,
      data: new Uint8Array([1, 2, 3, 250]),
      sha256: 'e'.repeat(64),
    },
  },
  {
    case: 'evalRequest',
    value: { step: 40, rowIds: [0, 3, 2 ** 40], batchSize: 8, klSumsOnly: false, kl: 0 },
  },
  {
    case: 'evalRequest',
    value: { step: 40, rowIds: [1, 2], batchSize: 4, klSumsOnly: true, kl: 0 },
  },
  {
    case: 'evalRequest',
    value: { step: 40, rowIds: [1, 2], batchSize: 4, klSumsOnly: false, kl: 0.375 },
  },
  {
    case: 'evalDone',
    value: {
      ...{ step: 40, lossSum: 812.25, tokenCount: 4096, rewardCorrect: 0 },
      ...{ rewardChosenSum: 0, rewardRejectedSum: 0, chosenLogpSum: 0, rejectedLogpSum: 0 },
      ...{ desirableCount: 0, kl: 0, klSum: 0, klRows: 0 },
      ...{ correctTokens: 1733, entropySum: 9114.5 },
    },
  },
  {
    case: 'evalDone',
    value: {
      ...{ step: 40, lossSum: 0, tokenCount: 0, rewardCorrect: 0 },
      ...{ rewardChosenSum: 0, rewardRejectedSum: 0, chosenLogpSum: 0, rejectedLogpSum: 0 },
      ...{ desirableCount: 0, kl: 0, klSum: -3.5, klRows: 12 },
      ...{ correctTokens: 0, entropySum: 0 },
    },
  },
  {
    case: 'evalDone',
    value: {
      step: 40,
      lossSum: 88.5,
      tokenCount: 200,
      rewardCorrect: 166,
      rewardChosenSum: -20.5,
      rewardRejectedSum: -7.75,
      chosenLogpSum: -205,
      rejectedLogpSum: -77.5,
      desirableCount: 0,
      kl: 0,
      klSum: 0,
      klRows: 0,
      correctTokens: 0,
      entropySum: 0,
    },
  },
];

export const controls: ControlMessageInit[] = bodies.map((body) => ({ runId: RUN, body }));

export function sampleChunk(overrides: Partial<Chunk> = {}): Omit<Chunk, 'payloadChecksum'> {
  return {
    runId: RUN,
    generation: 2,
    step: 12,
    phase: 'reduce-scatter',
    index: 1,
    senderRank: 2,
    dtype: 'f32',
    segment: 3,
    offset: 0,
    payload: new Uint8Array(new Float32Array([1, -2.5, 3e-8, 65504]).buffer),
    ...overrides,
  };
}
