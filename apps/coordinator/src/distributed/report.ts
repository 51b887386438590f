// What a distributed run reports: the dashboard's worker table, and the
// run's summary.json (faults and held-out losses included) with its closing lines.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SamplerState } from '@lorafleet/data';
import type { WorkerInfo, WorkerStatus } from '../observe/events.js';
import type { Member, WorkerFleet } from './fleet.js';
import type { RunPlan } from './run-plan.js';

export interface LoopResult {
  done: number;
  interrupted: boolean;
  losses: number[];
  /** Tokens trained on by this invocation. */
  tokens: number;
  /** Tokens since the run's first step (a resumed run counts the checkpoint's). */
  tokensSeen: number;
  sampler: SamplerState;
  seconds: number;
}

/** The dashboard's worker table: every worker seen, with its last step's timings. */
export function workerTable(
  fleet: WorkerFleet,
  timings: Map<Member, { computeMs: number; allReduceMs: number; waitMs: number }>,
): WorkerInfo[] {
  const ringSize = fleet.active().length;
  const status = (m: Member): WorkerStatus =>
    m.status === 'active'
      ? 'training'
      : m.status === 'ready'
        ? 'ready'
        : m.status === 'lost' || m.status === 'left'
          ? m.status
          : 'starting';
  return fleet.members().map((m) => ({
    rank: m.rank,
    workerId: m.hello?.workerId ?? m.name,
    host: m.hello?.host ?? '',
    pid: m.hello?.pid ?? m.process?.pid ?? 0,
    device: m.hello?.device ?? '',
    backend: m.hello?.backend ?? '',
    status: status(m),
    lastHeartbeatMs: m.lastHeartbeatMs,
    rssBytes: m.rssBytes,
    ...(timings.get(m) ?? { computeMs: 0, allReduceMs: 0, waitMs: 0 }),
    ringNext: m.rank < 0 ? -1 : (m.rank + 1) % ringSize,
  }));
}

export async function writeSummary(
  out: string,
  plan: RunPlan,
  r: LoopResult & {
    workers: number;
    saved: string;
    faults: {
      workersLost: number;
      workersJoined: number;
      /** The smallest ring the run trained on. */
      fewestWorkers: number;
      recoverySeconds: number[];
    };
    evalLossBefore: number | null;
    evalLossAfter: number | null;
  },
): Promise<void> {
  const head = r.losses.slice(0, Math.min(10, r.losses.length));
  const tail = r.losses.slice(-Math.min(10, r.losses.length));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const summary = {
    model: plan.config.modelDir,
    mode: 'lora',
    steps: r.done,
    interrupted: r.interrupted,
    trainLossFirst10: mean(head),
    trainLossLast10: mean(tail),
    evalLossBefore: r.evalLossBefore,
    evalLossAfter: r.evalLossAfter,
    trainableParameters: plan.trainableParameters,
    totalParameters: plan.totalParameters,
    tokens: r.tokensSeen,
    seconds: r.seconds,
    tokensPerSecond: r.tokens / r.seconds,
    backend: plan.backend,
    workers: r.workers,
    faults: r.faults,
    saved: r.saved,
  };
  await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  console.log(
    `done${r.interrupted ? ' (interrupted)' : ''}: ${r.done} steps on ${r.workers} workers in ${r.seconds.toFixed(1)} s, ` +
      `${summary.tokensPerSecond.toFixed(0)} tokens/s; train loss ${summary.trainLossFirst10.toFixed(4)} ` +
      `(first ${head.length} steps) -> ${summary.trainLossLast10.toFixed(4)} (last ${tail.length})`,
  );
  console.log(`saved adapter (PEFT layout): ${r.saved}; metrics: ${join(out, 'metrics.jsonl')}`);
}
