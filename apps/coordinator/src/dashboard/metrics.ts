// /metrics: the dashboard's figures in Prometheus text format, from a registry
// of the dashboard's own (never prom-client's global one, which a host
// process may share). Every gauge reads the run state when scraped.
import { Counter, Gauge, Registry } from 'prom-client';
import { type RunState, isLive } from './run-state.js';

const PHASES = ['compute', 'allreduce', 'wait'] as const;

type Registers = Registry[];

export function runMetrics(state: RunState): Registry {
  const registry = new Registry();
  const registers = [registry];
  runGauges(state, registers);
  runCounters(state, registers);
  factGauges(state, registers);
  workerGauges(state, registers);
  return registry;
}

/** A gauge that reads its value when scraped; 0 while it is undefined or not finite (prom-client keeps a reset gauge without labels at 0). */
function gauge(
  registers: Registers,
  name: string,
  help: string,
  read: () => number | undefined,
): void {
  new Gauge({
    name,
    help,
    registers,
    collect() {
      const value = read();
      if (value === undefined || !Number.isFinite(value)) this.reset();
      else this.set(value);
    },
  });
}

/** The last step's figures and the ring's state. */
function runGauges(state: RunState, registers: Registers): void {
  const g = (name: string, help: string, read: () => number | undefined) =>
    gauge(registers, name, help, read);
  g('lorafleet_step', 'Last completed optimizer step', () => state.lastStep?.step);
  g('lorafleet_epoch', 'Epoch of the last step', () => state.lastStep?.epoch);
  g('lorafleet_train_loss', 'Training loss of the last step', () => state.lastStep?.loss);
  g('lorafleet_eval_loss', 'Loss on the evaluation rows, latest', () => state.lastEval?.loss);
  g('lorafleet_learning_rate', 'Learning rate of the last step', () => state.lastStep?.lr);
  g(
    'lorafleet_grad_norm',
    'Global gradient norm before clipping, last step',
    () => state.lastStep?.gradNorm,
  );
  // A step's throughput counts the run's loss units: tokens, a preference run's pairs, KTO's examples.
  const unit = () => state.facts?.lossUnit ?? 'tokens';
  g(
    'lorafleet_tokens_per_second',
    'Training throughput of the last step, tokens (0 in a preference or KTO run)',
    () => (unit() === 'tokens' ? state.lastStep?.tokensPerSecond : undefined),
  );
  g(
    'lorafleet_pairs_per_second',
    'Preference objectives: training throughput of the last step, pairs (0 otherwise)',
    () => (unit() === 'pairs' ? state.lastStep?.tokensPerSecond : undefined),
  );
  g(
    'lorafleet_examples_per_second',
    'KTO: training throughput of the last step, examples (0 otherwise)',
    () => (unit() === 'examples' ? state.lastStep?.tokensPerSecond : undefined),
  );
  g(
    'lorafleet_reward_accuracy',
    "Preference objectives: share of the last step's pairs whose chosen reward beat the rejected one as it trained on them (0 otherwise)",
    () => state.lastStep?.rewardAccuracy,
  );
  g(
    'lorafleet_reward_margin',
    "Preference objectives and KTO: mean chosen (desirable) - rejected (undesirable) reward over the last step's pairs or examples (0 otherwise)",
    () => state.lastStep?.rewardMargin,
  );
  g(
    'lorafleet_kl',
    "KTO: the last step's KL estimate (TRL's kl, clamped at 0; 0 otherwise)",
    () => state.lastStep?.kl,
  );
  g(
    'lorafleet_eval_reward_accuracy',
    'Preference objectives: share of the evaluation pairs whose chosen reward beats the rejected one, latest (0 otherwise)',
    () => state.lastEval?.rewardAccuracy,
  );
  g(
    'lorafleet_token_accuracy',
    "The token loss (DPO: its chosen responses): share of the last step's labelled tokens its logits' argmax predicts (TRL's mean_token_accuracy; 0 otherwise)",
    () => state.lastStep?.meanTokenAccuracy,
  );
  g(
    'lorafleet_entropy',
    "The token loss (DPO: both responses; KTO: the completions): mean entropy in nats of the last step's predicted distributions over its labelled tokens (TRL's entropy; 0 otherwise)",
    () => state.lastStep?.entropy,
  );
  g(
    'lorafleet_eval_token_accuracy',
    'The token loss (DPO: its chosen responses): share of the evaluation tokens the argmax predicts, latest (0 otherwise)',
    () => state.lastEval?.meanTokenAccuracy,
  );
  g('lorafleet_step_seconds', 'Wall time of the last step', () => state.lastStep?.seconds);
  g('lorafleet_workers', 'Workers in the ring', () => state.workers.filter(isLive).length);
  g(
    'lorafleet_ring_generation',
    'Ring membership generation (rises when the ring re-forms)',
    () => state.generation,
  );
  g('lorafleet_run_finished', '1 once the run has ended', () => (state.end ? 1 : 0));
}

/** Totals so far: tokens (or a preference run's pairs) and checkpoints. */
function runCounters(state: RunState, registers: Registers): void {
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  // Read when scraped: the run facts (and their unit) come after the registry.
  const counted = (u: string) => () =>
    (state.facts?.lossUnit ?? 'tokens') === u ? state.tokens : 0;
  counter(
    'lorafleet_tokens_total',
    'Tokens trained on (0 in a preference or KTO run)',
    counted('tokens'),
  );
  counter(
    'lorafleet_pairs_total',
    'Preference objectives: pairs trained on (0 otherwise)',
    counted('pairs'),
  );
  counter(
    'lorafleet_examples_total',
    'KTO: examples trained on (0 otherwise)',
    counted('examples'),
  );
  counter('lorafleet_checkpoints_total', 'Checkpoints written', () => state.checkpoints.length);
}

/** The run facts: parameters (trainable vs total) and wire bytes (LoRA vs full fine-tuning). */
function factGauges(state: RunState, registers: Registers): void {
  new Gauge({
    name: 'lorafleet_parameters',
    help: 'Model parameters: trainable (the adapter) and total',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      if (!state.facts) return;
      this.set({ kind: 'trainable' }, state.facts.trainableParameters);
      this.set({ kind: 'total' }, state.facts.totalParameters);
    },
  });
  new Gauge({
    name: 'lorafleet_wire_bytes_per_step',
    help: "Bytes each worker sends per step in the ring all-reduce: this run's (lora) vs full fine-tuning's (full)",
    labelNames: ['mode'],
    registers,
    collect() {
      this.reset();
      if (!state.facts) return;
      this.set({ mode: 'lora' }, state.facts.wireBytesPerStep);
      this.set({ mode: 'full' }, state.facts.fullFinetuneWireBytesPerStep);
    },
  });
}

/** One series per worker rank: liveness, heartbeat, memory, and its last step's phases. */
function workerGauges(state: RunState, registers: Registers): void {
  const perWorker = (
    name: string,
    help: string,
    read: (w: RunState['workers'][number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['rank'],
      registers,
      collect() {
        this.reset();
        for (const w of state.workers) this.set({ rank: String(w.rank) }, read(w));
      },
    });
  perWorker('lorafleet_worker_up', '1 while the worker is in the ring', (w) => (isLive(w) ? 1 : 0));
  perWorker(
    'lorafleet_worker_last_heartbeat_seconds',
    'Epoch seconds of the last message from the worker',
    (w) => w.lastHeartbeatMs / 1000,
  );
  perWorker(
    'lorafleet_worker_memory_bytes',
    'Resident memory of the worker process',
    (w) => w.rssBytes,
  );
  new Gauge({
    name: 'lorafleet_worker_step_phase_seconds',
    help: "The worker's last step split into compute, all-reduce and waiting",
    labelNames: ['rank', 'phase'],
    registers,
    collect() {
      this.reset();
      for (const w of state.workers) {
        const ms = { compute: w.computeMs, allreduce: w.allReduceMs, wait: w.waitMs };
        for (const phase of PHASES) this.set({ rank: String(w.rank), phase }, ms[phase] / 1000);
      }
    },
  });
}
