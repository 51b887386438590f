// runWorker's side of the control plane, driven by a scripted coordinator (a
// ROUTER in this process) over real sockets: one rank, so the ring is the identity.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import {
  type ControlBody,
  type ControlMessage,
  decodeControl,
  encodeControl,
} from '@lorafleet/protocol';
import {
  UNASSIGNED_RUN,
  type RunConfig,
  resultManifestSha256,
  encodeRunConfig,
  runWorker,
} from '../src/index.js';
import { tinyRun } from './helpers.js';

const RUN = 'session-test';

/** The coordinator's end: one worker, messages in order. */
class ScriptedCoordinator {
  private identity: Buffer | undefined;
  private constructor(
    readonly router: Router,
    readonly endpoint: string,
  ) {}

  static async start(): Promise<ScriptedCoordinator> {
    const router = new Router({ linger: 0, receiveTimeout: 20_000 });
    await router.bind('tcp://127.0.0.1:*');
    return new ScriptedCoordinator(router, router.lastEndpoint!);
  }

  async receive(): Promise<ControlMessage> {
    const [identity, frame] = await this.router.receive();
    const decoded = decodeControl(frame!);
    if (!decoded.ok) throw new Error(decoded.error.message);
    // Heartbeats come from the worker's heartbeat thread, on a socket of its own.
    if (decoded.message.body.case !== 'heartbeat') this.identity = identity;
    return decoded.message;
  }

  /** The next message that is not a heartbeat (a worker's heartbeat thread beats every second). */
  async next(): Promise<ControlMessage> {
    for (;;) {
      const message = await this.receive();
      if (message.body.case !== 'heartbeat') return message;
    }
  }

  async send(body: ControlBody): Promise<void> {
    await this.router.send([this.identity!, encodeControl({ runId: RUN, body })]);
  }

  async welcome(dataEndpoint: string, config: RunConfig, tamper = false): Promise<void> {
    const encoded = encodeRunConfig(config);
    if (tamper) encoded.runConfig = encoded.runConfig.replace('"seed":3', '"seed":4');
    await this.send({
      case: 'welcome',
      value: {
        rank: 0,
        worldSize: 1,
        ringEndpoints: [dataEndpoint],
        ...encoded,
        generation: 0,
        ringPublicKeys: [],
        joining: false,
      },
    });
  }
}

let coordinator: ScriptedCoordinator | undefined;
let dir: string | undefined;
afterEach(async () => {
  coordinator?.router.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function startWorker(c: ScriptedCoordinator) {
  const lines: string[] = [];
  const done = runWorker({
    coordinator: c.endpoint,
    backend: 'wasm',
    timeoutMs: 20_000,
    ringHost: '127.0.0.1',
    log: (line) => lines.push(line),
  });
  done.catch(() => undefined); // awaited by each test
  return { done, lines };
}

describe('runWorker', () => {
  it('says Hello, trains planned steps, saves on request and leaves on Shutdown', async () => {
    const run = await tinyRun();
    dir = run.dir;
    coordinator = await ScriptedCoordinator.start();
    const worker = startWorker(coordinator);

    const hello = await coordinator.receive();
    expect(hello.runId).toBe(UNASSIGNED_RUN);
    if (hello.body.case !== 'hello') throw new Error(`expected hello, got ${hello.body.case}`);
    expect(hello.body.value.pid).toBe(process.pid);
    expect(hello.body.value.dataEndpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    await coordinator.welcome(hello.body.value.dataEndpoint, run.config);
    // "Loading" heartbeats from Welcome on (once the heartbeat thread runs: this
    // tiny replica may be built by then), then the first "idle" one says ready.
    // They carry the Hello's heartbeatId: they leave from the thread's own socket.
    let beat = await coordinator.receive();
    while (beat.body.case === 'heartbeat' && beat.body.value.state === 'loading') {
      beat = await coordinator.receive();
    }
    const { heartbeatId } = hello.body.value;
    expect(heartbeatId).toMatch(/^[0-9a-f]{32}$/);
    expect(beat.body).toMatchObject({ case: 'heartbeat', value: { state: 'idle', heartbeatId } });

    const hashes: string[] = [];
    for (const step of [1, 2]) {
      await coordinator.send({
        case: 'stepPlan',
        value: { step, sampleIds: [0, 1, 2], microBatchSize: 2, lrReductions: 0 },
      });
      const done = await coordinator.next();
      if (done.body.case !== 'stepDone')
        throw new Error(`expected stepDone, got ${done.body.case}`);
      const v = done.body.value;
      expect(done.runId).toBe(RUN);
      expect(v.step).toBe(step);
      expect(v.tokenCount).toBe(3 * 15); // 3 packed rows of 16: 15 predicted tokens each
      expect(v.lossSum / v.tokenCount).toBeGreaterThan(4); // ~ln(257) for a random model
      expect(v.replicaHash).toHaveLength(8);
      expect(Number.isFinite(v.gradNorm)).toBe(true);
      hashes.push(Buffer.from(v.replicaHash).toString('hex'));
      await coordinator.send({ case: 'commit', value: { step } });
    }
    expect(hashes[0]).not.toBe(hashes[1]); // the parameters moved

    const path = join(run.dir, 'adapter');
    await coordinator.send({
      case: 'checkpointRequest',
      value: { step: 2, path, fromCheckpoint: '' },
    });
    const saved = await coordinator.next();
    expect(saved.body).toEqual({
      case: 'checkpointDone',
      value: { step: 2, path, manifestSha256: await resultManifestSha256(path, 'lora') },
    });
    await coordinator.send({ case: 'shutdown', value: { reason: 'done' } });
    await worker.done;
  });

  it('reports an Error and fails on a plan for the wrong step', async () => {
    const run = await tinyRun();
    dir = run.dir;
    coordinator = await ScriptedCoordinator.start();
    const worker = startWorker(coordinator);
    const hello = await coordinator.receive();
    if (hello.body.case !== 'hello') throw new Error('expected hello');
    await coordinator.welcome(hello.body.value.dataEndpoint, run.config);
    await coordinator.receive(); // ready
    await coordinator.send({
      case: 'stepPlan',
      value: { step: 5, sampleIds: [0], microBatchSize: 1, lrReductions: 0 },
    });
    const error = await coordinator.next();
    expect(error.body).toEqual({
      case: 'error',
      value: {
        code: 'internal',
        message: "rank 0: StepPlan for step 5, but this replica's next step is 1",
      },
    });
    await expect(worker.done).rejects.toThrow(/StepPlan for step 5/);
  });

  it('refuses a body only workers send (no silent ignore), and says so in an Error', async () => {
    const run = await tinyRun();
    dir = run.dir;
    coordinator = await ScriptedCoordinator.start();
    const worker = startWorker(coordinator);
    const hello = await coordinator.receive();
    if (hello.body.case !== 'hello') throw new Error('expected hello');
    await coordinator.welcome(hello.body.value.dataEndpoint, run.config);
    await coordinator.receive(); // ready
    await coordinator.send({
      case: 'evalDone',
      value: {
        ...{ step: 0, lossSum: 1, tokenCount: 1, rewardCorrect: 0 },
        ...{ rewardChosenSum: 0, rewardRejectedSum: 0, chosenLogpSum: 0, rejectedLogpSum: 0 },
        ...{ desirableCount: 0, kl: 0, klSum: 0, klRows: 0 },
        ...{ correctTokens: 0, entropySum: 0 },
        ...{ chosenTokens: 0, rejectedTokens: 0, chosenLogitSum: 0, rejectedLogitSum: 0 },
        ...{ nllPairs: 0, nllSum: 0, oddsPairs: 0, logOddsRatioSum: 0, logOddsChosenSum: 0 },
      },
    });
    const error = await coordinator.next();
    expect(error.body).toMatchObject({
      case: 'error',
      value: {
        code: 'internal',
        message: expect.stringMatching(/sent evalDone, which only workers send/),
      },
    });
    await expect(worker.done).rejects.toThrow(/evalDone, which only workers send/);
  });

  it('refuses a run config that does not match its hash', async () => {
    const run = await tinyRun();
    dir = run.dir;
    coordinator = await ScriptedCoordinator.start();
    const worker = startWorker(coordinator);
    const hello = await coordinator.receive();
    if (hello.body.case !== 'hello') throw new Error('expected hello');
    await coordinator.welcome(hello.body.value.dataEndpoint, run.config, true);
    const error = await coordinator.next();
    expect(error.body).toMatchObject({ case: 'error', value: { code: 'config-mismatch' } });
    await expect(worker.done).rejects.toThrow(/does not match its hash/);
  });
});
