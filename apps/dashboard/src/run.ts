// Everything the page shows, folded from the event stream. Series are kept
// whole (a point per step is small); the views thin them out for drawing.
import type { Download, RunEvent, RunFacts, WorkerInfo } from '@lorafleet/run-events';

export type Point = [x: number, y: number];

/** Ready or training: in the ring. */
export function isLive(worker: WorkerInfo): boolean {
  return worker.status === 'ready' || worker.status === 'training';
}

export interface LogLine {
  time: number;
  level: 'info' | 'warn' | 'error';
  message: string;
}

export type Connection = 'connecting' | 'live' | 'reconnecting';

export class RunView {
  facts: RunFacts | null = null;
  startedMs: number | null = null;
  lastEventMs = 0;
  step = 0;
  epoch = 0;
  tokens = 0;
  readonly trainLoss: Point[] = [];
  readonly evalLoss: Point[] = [];
  /** A preference run's held-out reward accuracy at each evaluation. */
  readonly evalRewardAccuracy: Point[] = [];
  /** A preference run's reward accuracy over each step's pairs, as it trained on them. */
  readonly trainRewardAccuracy: Point[] = [];
  /** A KTO run's mean desirable - undesirable reward, each step and at each evaluation, and its KL estimate. */
  readonly trainRewardMargin: Point[] = [];
  readonly evalRewardMargin: Point[] = [];
  readonly trainKl: Point[] = [];
  /** A run of the token loss: TRL's mean_token_accuracy each step and at each evaluation. */
  readonly trainTokenAccuracy: Point[] = [];
  readonly evalTokenAccuracy: Point[] = [];
  readonly lr: Point[] = [];
  readonly tokensPerSecond: Point[] = [];
  /** [step, epoch ms when it was done]: the pace, for the time left. */
  readonly stepTimes: Point[] = [];
  workers: WorkerInfo[] = [];
  generation = 0;
  readonly checkpoints: { step: number; time: number }[] = [];
  downloads: Download[] = [];
  readonly log: LogLine[] = [];
  end: Extract<RunEvent, { type: 'end' }> | null = null;
  connection: Connection = 'connecting';

  /** What `tokens` and tokensPerSecond count: tokens, a preference run's pairs, or a KTO run's examples. */
  get lossUnit(): 'tokens' | 'pairs' | 'examples' {
    return this.facts?.lossUnit ?? 'tokens';
  }

  apply(event: RunEvent): void {
    this.startedMs ??= event.time;
    this.lastEventMs = Math.max(this.lastEventMs, event.time);
    switch (event.type) {
      case 'run':
        this.facts = event.facts;
        this.end = null;
        this.note(
          event.time,
          'info',
          `run ${event.facts.runId}: ${event.facts.model}, ${event.facts.workers} worker(s), ${event.facts.steps} steps`,
        );
        break;
      case 'step':
        // A resumed run repeats steps after its last checkpoint: keep the later values.
        truncateFrom(this.trainLoss, event.step);
        truncateFrom(this.lr, event.step);
        truncateFrom(this.tokensPerSecond, event.step);
        truncateFrom(this.stepTimes, event.step);
        truncateFrom(this.trainRewardAccuracy, event.step);
        if (event.rewardAccuracy !== undefined)
          this.trainRewardAccuracy.push([event.step, event.rewardAccuracy]);
        truncateFrom(this.trainTokenAccuracy, event.step);
        if (event.meanTokenAccuracy !== undefined)
          this.trainTokenAccuracy.push([event.step, event.meanTokenAccuracy]);
        truncateFrom(this.trainRewardMargin, event.step);
        truncateFrom(this.trainKl, event.step);
        if (event.kl !== undefined) {
          this.trainKl.push([event.step, event.kl]);
          if (event.rewardMargin !== undefined)
            this.trainRewardMargin.push([event.step, event.rewardMargin]);
        }
        this.trainLoss.push([event.step, event.loss]);
        this.lr.push([event.step, event.lr]);
        this.tokensPerSecond.push([event.step, event.tokensPerSecond]);
        this.stepTimes.push([event.step, event.time]);
        this.step = event.step;
        this.epoch = event.epoch;
        this.tokens += event.tokens;
        break;
      case 'eval':
        truncateFrom(this.evalLoss, event.step);
        this.evalLoss.push([event.step, event.loss]);
        truncateFrom(this.evalRewardAccuracy, event.step);
        if (event.rewardAccuracy !== undefined)
          this.evalRewardAccuracy.push([event.step, event.rewardAccuracy]);
        truncateFrom(this.evalTokenAccuracy, event.step);
        if (event.meanTokenAccuracy !== undefined)
          this.evalTokenAccuracy.push([event.step, event.meanTokenAccuracy]);
        truncateFrom(this.evalRewardMargin, event.step);
        if (event.kl !== undefined && event.rewardMargin !== undefined)
          this.evalRewardMargin.push([event.step, event.rewardMargin]);
        break;
      case 'workers':
        this.generation = event.generation;
        this.workers = [...event.workers].sort((a, b) => a.rank - b.rank);
        break;
      case 'checkpoint':
        this.checkpoints.push({ step: event.step, time: event.time });
        this.note(event.time, 'info', `checkpoint at step ${event.step}: ${event.path}`);
        break;
      case 'log':
        this.note(event.time, event.level, event.message);
        break;
      case 'end':
        this.end = event;
        this.note(
          event.time,
          event.status === 'failed' ? 'error' : 'info',
          `run ${event.status}${event.message ? `: ${event.message}` : ''}`,
        );
        break;
    }
  }

  /** In the ring now: an ended run has no live workers, whatever their last report said. */
  live(worker: WorkerInfo): boolean {
    return this.end === null && isLive(worker);
  }

  /** Milliseconds per step over the last `window` steps; undefined before two steps. */
  msPerStep(window = 20): number | undefined {
    const recent = this.stepTimes.slice(-window - 1);
    if (recent.length < 2) return undefined;
    const [first, last] = [recent[0]!, recent[recent.length - 1]!];
    return (last[1] - first[1]) / Math.max(1, last[0] - first[0]);
  }

  /** "Now" for ages: the end of a finished run, else the clock. */
  now(): number {
    return this.end ? this.end.time : Date.now();
  }

  private note(time: number, level: LogLine['level'], message: string): void {
    this.log.push({ time, level, message });
  }
}

/** Drops the points at x >= `x` (kept in x order). */
function truncateFrom(series: Point[], x: number): void {
  while (series.length > 0 && series[series.length - 1]![0] >= x) series.pop();
}
