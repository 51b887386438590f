// Real `lorafleet train` processes for the fault tests: started, watched
// line by line (a test acts when a worker says it pauses at an awkward
// moment: LORAFLEET_FAULT_PAUSE), killed, and their ledger audited.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers.js';

export const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

export interface RunResult {
  code: number | null;
  output: string;
}

/** A worker's LORAFLEET_FAULT_PAUSE line: it waits now, at this moment and step. */
export interface Pause {
  moment: string;
  step: number;
  pid: number;
}

export interface Running {
  child: ChildProcess;
  done: Promise<RunResult>;
  output(): string;
  /** Worker pids announced so far ("worker K (pid P) said Hello"), in order. */
  workerPids(): number[];
  /** Resolves once OUT/metrics.jsonl holds `step` lines. */
  untilStep(out: string, step: number): Promise<void>;
  /** The next pause at `moment` (at `step` or later) after the `skip` first ones. */
  untilPause(moment: string, options?: { step?: number; skip?: number }): Promise<Pause>;
  /** Pauses at `moment` announced so far. */
  pauses(moment: string): Pause[];
  /** Resolves once the output matches `pattern`. */
  untilOutput(pattern: RegExp): Promise<void>;
}

/** Processes to SIGKILL after each test (orphaned workers of a killed coordinator). */
export const strays = new Set<number>();
const runs: Running[] = [];

/** Kills what the test left running, the runs' workers included: call from afterEach. */
export function killLeftovers(): void {
  for (const run of runs.splice(0)) killRun(run);
  for (const pid of strays) signal(pid, 'SIGKILL');
  strays.clear();
}

/** SIGKILLs a run's coordinator and every worker it announced (orphans would hold its output pipe open). */
export function killRun(run: Running): void {
  if (run.child.exitCode === null) run.child.kill('SIGKILL');
  for (const pid of run.workerPids()) signal(pid, 'SIGKILL');
}

/** process.kill that ignores a process already gone. */
export function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

export function isRunning(pid: number): boolean {
  return signal(pid, 0 as unknown as NodeJS.Signals);
}

const PAUSE = /test hook: pause \d+ ms in (\w+) at step (\d+) \(pid (\d+)\)/g;

/** Starts `command args` (default: node lorafleet.js), collecting stdout and stderr together. */
export function start(
  args: string[],
  env: Record<string, string> = {},
  command: string[] = [process.execPath, CLI_BIN],
): Running {
  const child = spawn(command[0]!, [...command.slice(1), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LORAFLEET_DEBUG: '', ...env },
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
  let finished = false;
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    // Workers outliving their coordinator (killed) keep the pipes open, so
    // 'close' may never come: the run ends when the coordinator exits, with
    // what it wrote until 2 s later.
    child.on('exit', (code) => {
      finished = true;
      setTimeout(() => resolve({ code, output }), 2_000).unref();
    });
  });
  const poll = async <T>(what: string, found: () => Promise<T | undefined>): Promise<T> => {
    for (;;) {
      const value = await found();
      if (value !== undefined) return value;
      if (finished) throw new Error(`the run ended before ${what}:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const pauses = (moment: string) =>
    [...output.matchAll(PAUSE)]
      .map((m) => ({ moment: m[1]!, step: Number(m[2]), pid: Number(m[3]) }))
      .filter((p) => p.moment === moment);
  const run: Running = {
    child,
    done,
    output: () => output,
    workerPids: () =>
      [...output.matchAll(/worker \d+ \(pid (\d+)\) said Hello/g)].map((m) => Number(m[1])),
    untilStep: async (out, step) => {
      await poll(`step ${step}`, async () => {
        const text = await readFile(join(out, 'metrics.jsonl'), 'utf8').catch(() => '');
        return text.split('\n').filter(Boolean).length >= step ? true : undefined;
      });
    },
    untilPause: (moment, { step = 0, skip = 0 } = {}) =>
      poll(`a pause in ${moment} at step ${step} or later`, async () =>
        pauses(moment)
          .slice(skip)
          .find((p) => p.step >= step),
      ),
    pauses,
    untilOutput: async (pattern) => {
      await poll(`${pattern}`, async () => (pattern.test(output) ? true : undefined));
    },
  };
  runs.push(run);
  return run;
}

export const runToEnd = (args: string[], env: Record<string, string> = {}) => start(args, env).done;

/** Rows of the training data, as the run reports them ("-> R rows of 32"). */
export function rowsOf(output: string): number {
  const rows = Number(/-> (\d+) rows of \d+/.exec(output)?.[1]);
  if (!Number.isInteger(rows)) throw new Error(`no row count in the run's output:\n${output}`);
  return rows;
}

/** Duplicates within an epoch, and (given `rows` > 0) ids missing from a complete epoch. */
export function checkLedger(text: string, rows: number) {
  const entries = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; epoch: number; ids: number[] });
  const byEpoch = new Map<number, number[]>();
  for (const e of entries) byEpoch.set(e.epoch, [...(byEpoch.get(e.epoch) ?? []), ...e.ids]);
  const duplicates: string[] = [];
  const missing: string[] = [];
  const lastEpoch = Math.max(...byEpoch.keys());
  for (const [epoch, ids] of byEpoch) {
    const seen = new Set<number>();
    for (const id of ids) {
      if (seen.has(id)) duplicates.push(`epoch ${epoch}: ${id}`);
      seen.add(id);
    }
    const complete = epoch < lastEpoch || ids.length >= rows;
    if (rows > 0 && complete) {
      for (let id = 0; id < rows; id++) if (!seen.has(id)) missing.push(`epoch ${epoch}: ${id}`);
    }
  }
  const steps = entries.map((e) => e.step);
  const stepsInOrder = steps.every((s, i) => s === i + 1);
  return { epochs: byEpoch.size, duplicates, missing, steps: entries.length, stepsInOrder };
}

/** LORAFLEET_CHAOS_SEED replays a run's faults; without it, a new seed each run. */
export function chaosSeed(): number {
  const given = process.env.LORAFLEET_CHAOS_SEED;
  if (given === undefined || given === '') return Date.now() % 100_000;
  const seed = Number(given);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`LORAFLEET_CHAOS_SEED=${given}: expected a non-negative integer`);
  }
  return seed;
}

/** Lines of OUT/metrics.jsonl: the steps committed so far. */
export async function committedSteps(out: string): Promise<number> {
  const text = await readFile(join(out, 'metrics.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).length;
}

/**
 * Kills `pid` and times what follows, for the README's fault table: until the
 * coordinator reports it lost (detection), and until the next step is
 * committed (recovery, the replay included).
 */
export async function killAndTime(run: Running, out: string, pid: number) {
  const steps = await committedSteps(out);
  const t0 = performance.now();
  signal(pid, 'SIGKILL');
  await run.untilOutput(new RegExp(`\\(pid ${pid}\\) lost: `));
  const detected = (performance.now() - t0) / 1000;
  await run.untilStep(out, steps + 1);
  const recovered = (performance.now() - t0) / 1000;
  return { detected, recovered };
}

/** One line a test prints about a fault it timed (the README's table quotes them). */
export function report(fault: string, t: { detected: number; recovered: number }): void {
  console.log(
    `${fault}: lost after ${t.detected.toFixed(2)} s, next step committed after ${t.recovered.toFixed(2)} s`,
  );
}
