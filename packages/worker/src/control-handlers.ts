// What a worker does with each control message of a run, one handler per body
// of the protocol's oneof. The table is typed by ControlBody['case']: a body
// added to the .proto does not compile here until it has a handler.
import {
  type KtoStatSums,
  type PairStatSums,
  ktoKl,
  ktoStatSums,
  pairStatSums,
  type TokenStatSums,
  tokenStatSums,
} from '@lorafleet/models';
import type { ControlBody, StepDone, StepPlan } from '@lorafleet/protocol';
import { isCheckpointInProgress } from './checkpoint.js';
import { DataError, nameRows } from './data-error.js';
import {
  maybeCorruptReplica,
  maybeBlockCompute,
  maybeDelayStep,
  maybeHangCompute,
  maybePause,
  maybeUnlabel,
} from './fault-injection.js';
import { stepOrAbort } from './mailbox.js';
import { asStorageError } from './storage-error.js';
import { batchesOf } from './rows.js';
import { rowsKey } from './rows-key.js';
import { decodeTrainState, encodeTrainState, stateParts } from './state-transfer.js';
import type { WorkerSession } from './worker-session.js';

type Case = ControlBody['case'];
type BodyOf<K extends Case> = Extract<ControlBody, { case: K }>['value'];

/** 'stop': the run is over for this worker (Shutdown); otherwise the next message follows. */
type Handler<K extends Case> = (session: WorkerSession, body: BodyOf<K>) => Promise<'stop' | void>;

/** Bodies only a worker sends: a coordinator that sends one is broken. */
const workerSends =
  (kind: Case) =>
  async (session: WorkerSession): Promise<never> => {
    throw new Error(
      `rank ${session.rank}: the coordinator sent ${kind}, which only workers send (a broken or foreign coordinator)`,
    );
  };

/** The replica must be at `step` with nothing uncommitted, or the request is for another state. */
function expectCommittedAt(session: WorkerSession, step: number, what: string): void {
  const done = session.replica.step.stepsDone;
  if (session.snapshot || step !== done) {
    throw new Error(
      `${what} at step ${step}, but this replica is at ${done}` +
        (session.snapshot ? ' with a step not yet committed' : ''),
    );
  }
}

export const handlers: { [K in Case]: Handler<K> } = {
  async stepPlan(session, plan) {
    const r = session.replica;
    session.snapshot = r.step.snapshot();
    session.ringStep = plan.step;
    session.state = 'computing';
    const outcome = await stepOrAbort(
      session.mailbox,
      (signal) => trainStep(session, plan, signal),
      () => session.dropRing(),
    );
    session.state = 'idle';
    if (outcome.kind === 'done') await session.send({ case: 'stepDone', value: outcome.value });
    else if (outcome.kind === 'failed') throw outcome.error;
    // 'aborted': the Abort (or Shutdown) waits in the mailbox.
  },

  async commit(session, { step }) {
    const done = session.replica.step.stepsDone;
    if (step !== done) throw new Error(`Commit of step ${step}, but this replica is at ${done}`);
    session.snapshot = undefined;
  },

  async abort(session, { step, reason }) {
    const r = session.replica;
    if (session.snapshot) r.step.restore(session.snapshot);
    session.snapshot = undefined;
    session.dropRing();
    session.log(
      `rank ${session.rank}: step ${step} aborted (${reason}); back at step ${r.step.stepsDone}`,
    );
  },

  async regroup(session, g) {
    const r = session.replica;
    if (g.step !== r.step.stepsDone) {
      throw new Error(`Regroup at step ${g.step}, but this replica is at ${r.step.stepsDone}`);
    }
    await session.formRing(g);
    session.log(
      `rank ${session.rank}/${g.worldSize}: ring generation ${g.generation} at step ${g.step}`,
    );
    await maybePause('regroup', g.step);
    await session.send({
      case: 'regrouped',
      value: {
        generation: g.generation,
        step: r.step.stepsDone,
        replicaHash: r.step.parameterHash(),
      },
    });
  },

  async stateRequest(session, { step }) {
    expectCommittedAt(session, step, 'StateRequest');
    const r = session.replica;
    const bytes = encodeTrainState(r.step.snapshot());
    await maybePause('state', step);
    for (const part of stateParts(r.step.stepsDone, bytes)) {
      await session.send({ case: 'trainerState', value: part });
    }
  },

  async trainerState(session, part) {
    const complete = session.assembler.add(part);
    if (!complete) return;
    const r = session.replica;
    r.step.restore(decodeTrainState(complete.bytes, r.step.params.size, r.step.stateSizes()));
    if (r.step.stepsDone !== complete.step) {
      throw new Error(`trainer state says step ${complete.step}, but holds ${r.step.stepsDone}`);
    }
    session.log(
      `loaded the trainer state of step ${complete.step} (${complete.bytes.byteLength} bytes)`,
    );
  },

  async evalRequest(session, { step, rowIds, batchSize, klSumsOnly, kl }) {
    expectCommittedAt(session, step, 'EvalRequest');
    const round = klSumsOnly ? { klSumsOnly } : { klSumsOnly, kl };
    const { lossSum, tokens, pairs, kto, klSums, tokenStats } = await session.replica.evaluate(
      rowIds,
      batchSize,
      session.onCompute,
      round,
    );
    await maybePause('eval', step);
    const [klSum = 0, klRows = 0] = klSums ?? [];
    await session.send({
      case: 'evalDone',
      value: {
        ...{ step, lossSum, tokenCount: tokens, ...statFields(pairs, kto), klSum, klRows },
        ...(pairs
          ? responseFields(pairs)
          : kto
            ? responseFields({ ...kto, chosenCorrectTokens: 0 })
            : tokenFields(tokenStats)),
      },
    });
  },

  async checkpointRequest(session, { step, path, fromCheckpoint }) {
    const r = session.replica;
    if (step !== r.step.stepsDone) {
      throw new Error(
        `CheckpointRequest for step ${step}, but this replica is at ${r.step.stepsDone}`,
      );
    }
    session.state = 'checkpointing';
    // A folder the coordinator started with trainer_state.json is a training
    // checkpoint; any other path gets the run's result (the PEFT adapter, or the model).
    const write = (await isCheckpointInProgress(path))
      ? r.writeCheckpoint(path)
      : r.saveResult(path, fromCheckpoint || undefined);
    // A full disk is not this worker's fault: the coordinator stops the run (storage-error.ts).
    const manifestSha256 = await write.catch((error: unknown) => {
      throw asStorageError(error, path);
    });
    session.state = 'idle';
    await session.send({ case: 'checkpointDone', value: { step, path, manifestSha256 } });
  },

  async shutdown() {
    return 'stop';
  },

  async error(_session, { message }) {
    throw new Error(`the coordinator stopped the run: ${message}`);
  },

  // The mailbox consumes heartbeats; one that reaches the table carries nothing.
  async heartbeat() {},

  hello: workerSends('hello'),
  welcome: async (session) => {
    throw new Error(`rank ${session.rank}: a second Welcome in the same run`);
  },
  stepDone: workerSends('stepDone'),
  regrouped: workerSends('regrouped'),
  checkpointDone: workerSends('checkpointDone'),
  evalDone: workerSends('evalDone'),
};

/** Runs the handler of `body` on the session. */
export function handle(session: WorkerSession, body: ControlBody): Promise<'stop' | void> {
  const handler = handlers[body.case] as Handler<typeof body.case>;
  return handler(session, body.value as never);
}

/** One step on this rank's share of the global batch; the StepDone it reports. */
async function trainStep(
  session: WorkerSession,
  plan: StepPlan,
  signal: AbortSignal,
): Promise<StepDone> {
  const replica = session.replica;
  const expected = replica.step.stepsDone + 1;
  if (plan.step !== expected) {
    throw new Error(`StepPlan for step ${plan.step}, but this replica's next step is ${expected}`);
  }
  const batches = batchesOf(
    replica.rowsOf(plan.sampleIds),
    plan.microBatchSize,
    replica.config.rows,
  );
  await maybeDelayStep(signal);
  maybeUnlabel(batches, plan.step);
  const onCompute = (computeLimitMs: number, warmingUp?: boolean) => {
    session.onCompute(computeLimitMs, warmingUp);
    if (computeLimitMs === 0) return;
    maybeHangCompute(session.rank, plan.step, session.log);
    maybeBlockCompute(session.rank, plan.step, session.log);
  };
  // batchesOf cuts the rows in order, micro-batch size at a time: so are the keys.
  const rowKeys = batches.map((_, i) =>
    rowsKey(plan.sampleIds.slice(i * plan.microBatchSize, (i + 1) * plan.microBatchSize)),
  );
  const run = replica.step.run(batches, {
    signal,
    onCompute,
    lrReductions: plan.lrReductions,
    rowKeys,
  });
  const result = await run.catch((error: unknown) => {
    if (!(error instanceof DataError)) throw error;
    const rows = nameRows(replica.config.dataFile, replica.rowLines, plan.sampleIds);
    throw new DataError(`${error.message}; this rank's rows: ${rows || 'none'}`);
  });
  if (maybeCorruptReplica(replica.step, session.rank)) {
    session.log(
      `rank ${session.rank}: test hook: corrupted one parameter after step ${result.step}`,
    );
  }
  const kto = replica.config.objective?.kind === 'kto';
  const kl = result.shared ? ktoKl(result.shared) : 0;
  const feedback = replica.config.objective !== undefined;
  const stats = kto
    ? statFields(undefined, { ...ktoStatSums(result.local.stats), kl })
    : statFields(feedback ? pairStatSums(result.local.stats) : undefined);
  const tokens = kto
    ? responseFields({ ...ktoStatSums(result.local.stats), chosenCorrectTokens: 0 })
    : feedback
      ? responseFields(pairStatSums(result.local.stats))
      : tokenFields(tokenStatSums(result.local.stats));
  return {
    step: result.step,
    lossSum: result.local.lossSum,
    tokenCount: result.local.tokens,
    timings: {
      computeMs: result.timings.compute * 1000,
      allreduceMs: result.timings.allReduce * 1000,
      updateMs: result.timings.update * 1000,
    },
    replicaHash: replica.step.parameterHash(),
    gradNorm: result.gradNorm,
    nonFiniteParameters: replica.step.nonFiniteParameters(),
    ...stats,
    ...tokens,
  };
}

/** StepDone's and EvalDone's token metrics (TRL's SFT ones, as sums); zeros for the other objectives. */
function tokenFields(sums?: TokenStatSums) {
  return {
    ...{ correctTokens: sums?.correct ?? 0, entropySum: sums?.entropy ?? 0 },
    ...{ chosenTokens: 0, rejectedTokens: 0, chosenLogitSum: 0, rejectedLogitSum: 0 },
  };
}

/**
 * The same fields for pairs, DPO's token metrics of the responses (zeros for
 * the other preference objectives), or KTO's of its completions (desirable
 * as chosen; no accuracy).
 */
function responseFields(
  p: Pick<
    PairStatSums,
    | 'chosenCorrectTokens'
    | 'entropySum'
    | 'chosenTokens'
    | 'rejectedTokens'
    | 'chosenLogitSum'
    | 'rejectedLogitSum'
  >,
) {
  return {
    ...{ correctTokens: p.chosenCorrectTokens, entropySum: p.entropySum },
    ...{ chosenTokens: p.chosenTokens, rejectedTokens: p.rejectedTokens },
    ...{ chosenLogitSum: p.chosenLogitSum, rejectedLogitSum: p.rejectedLogitSum },
  };
}

/**
 * StepDone's and EvalDone's statistics: a preference objective's pair sums,
 * or KTO's sums (the rewards and log-probabilities of its desirable and
 * undesirable examples) with its KL estimate; zeros where there are none.
 */
function statFields(pairs?: PairStatSums, kto?: KtoStatSums & { kl: number }) {
  if (kto) {
    const { desirable, chosenSum, rejectedSum, chosenLogpSum, rejectedLogpSum, kl } = kto;
    return {
      ...{ rewardCorrect: 0, rewardChosenSum: chosenSum, rewardRejectedSum: rejectedSum },
      ...{ chosenLogpSum, rejectedLogpSum, desirableCount: desirable, kl },
      ...nllFields(pairStatSums([])),
    };
  }
  const p = pairs ?? pairStatSums([]);
  return {
    ...{ rewardCorrect: p.correct, rewardChosenSum: p.chosenSum, rewardRejectedSum: p.rejectedSum },
    ...{ chosenLogpSum: p.chosenLogpSum, rejectedLogpSum: p.rejectedLogpSum },
    ...{ desirableCount: 0, kl: 0 },
    ...nllFields(p),
  };
}

/** The NLL term's and ORPO's log-odds sums (zeros for the objectives without them). */
function nllFields(p: PairStatSums) {
  return {
    ...{ nllPairs: p.nllPairs, nllSum: p.nllSum, oddsPairs: p.oddsPairs },
    ...{ logOddsRatioSum: p.logOddsRatioSum, logOddsChosenSum: p.logOddsChosenSum },
  };
}
