// The run events as the coordinator streams them: a copy of the types in
// apps/coordinator/src/observe/events.ts (the dashboard talks to the
// coordinator over HTTP only, so it shares the wire format, not the code).

export interface RunFacts {
  runId: string;
  model: string;
  mode: string;
  totalParameters: number;
  trainableParameters: number;
  lora: { r: number; alpha: number; dropout: number; targets: string[] } | null;
  backend: string;
  workers: number;
  steps: number;
  batchSize: number;
  seqLen: number;
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
  lastHeartbeatMs: number;
  rssBytes: number;
  computeMs: number;
  allReduceMs: number;
  waitMs: number;
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
    }
  | { type: 'eval'; time: number; step: number; loss: number }
  | { type: 'workers'; time: number; generation: number; workers: WorkerInfo[] }
  | { type: 'checkpoint'; time: number; step: number; path: string }
  | { type: 'log'; time: number; level: 'info' | 'warn' | 'error'; message: string }
  | { type: 'end'; time: number; status: 'finished' | 'interrupted' | 'failed'; message: string };

/** An adapter on disk that can be downloaded (GET /api/state). */
export interface Download {
  name: string;
  step: number | null;
  files: string[];
}

/** Ready or training: in the ring. */
export function isLive(worker: WorkerInfo): boolean {
  return worker.status === 'ready' || worker.status === 'training';
}
