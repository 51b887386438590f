// The dashboard server over real HTTP on 127.0.0.1: the event stream (history,
// then live, resumable, slow readers dropped), the JSON snapshot and
// /metrics. Static files, downloads and the guards: dashboard-files.test.ts.
import { request } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { RunEventLog } from '../src/observe/events.js';
import {
  FACTS,
  STEP,
  fetchRaw,
  openStream,
  sampleLog,
  serve,
  useDashboardFixture,
  worker,
} from './dashboard-fixture.js';

useDashboardFixture();

describe('GET /api/events', () => {
  it('sends the history, then live events, then heartbeats; unsubscribes when the client goes', async () => {
    const events = sampleLog();
    const unsubscribed = vi.fn();
    const subscribe = events.subscribe.bind(events);
    vi.spyOn(events, 'subscribe').mockImplementation((listener) => {
      const off = subscribe(listener);
      return () => {
        unsubscribed();
        return off();
      };
    });
    const dashboard = await serve(events, { streamLimits: { heartbeatMs: 50 } });
    const stream = openStream(dashboard.url);
    await stream.until(() => stream.events().length === 6);
    expect(stream.response()!.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(stream.response()!.headers['cache-control']).toBe('no-store');
    expect(stream.messages[0]!.event).toBe('reset');
    expect(stream.events().map((e) => e.type)).toEqual([
      'run',
      'step',
      'step',
      'eval',
      'workers',
      'checkpoint',
    ]);

    events.emit({ ...STEP, step: 3, loss: 5.0 });
    await stream.until(() => stream.events().length === 7);
    expect(stream.events()[6]).toMatchObject({ type: 'step', step: 3, loss: 5.0 });
    await stream.until(() => stream.comments() >= 2);

    stream.close();
    await vi.waitFor(() => expect(unsubscribed).toHaveBeenCalledTimes(1));
  });

  it('resumes after Last-Event-ID without repeating events', async () => {
    const events = sampleLog();
    const dashboard = await serve(events);
    const first = openStream(dashboard.url);
    await first.until(() => first.events().length === 6);
    const lastId = first.messages.at(-1)!.id!;
    first.close();
    events.emit({ ...STEP, step: 3, loss: 5.0 });

    const again = openStream(dashboard.url, { 'Last-Event-ID': lastId });
    await again.until(() => again.events().length === 1);
    expect(again.events()[0]).toMatchObject({ type: 'step', step: 3 });
    expect(again.messages.some((m) => m.event === 'reset')).toBe(false);
    again.close();

    // An id from another server (a restarted coordinator) starts over.
    const other = openStream(dashboard.url, { 'Last-Event-ID': 'feedface-3' });
    await other.until(() => other.events().length === 7);
    expect(other.messages[0]!.event).toBe('reset');
    other.close();
  });

  it('drops a client that stops reading instead of buffering for it', async () => {
    const events = sampleLog();
    const log = vi.fn();
    const dashboard = await serve(events, { log, streamLimits: { stallMs: 200 } });
    const url = new URL(dashboard.url);
    let closed = false;
    const req = request({ host: url.hostname, port: url.port, path: '/api/events' }, (res) => {
      res.pause(); // never reads
      res.on('close', () => (closed = true));
    });
    req.end();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Far more than the socket buffers hold: the server must stop writing and drop the client.
    const big = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 200; i++) events.emit({ type: 'log', level: 'info', message: big });
    await vi.waitFor(
      () =>
        expect(log).toHaveBeenCalledWith(
          expect.stringMatching(/dropped an event stream that stopped reading/),
        ),
      { timeout: 5000 },
    );
    req.destroy();
    await vi.waitFor(() => expect(closed).toBe(true));
  });
});

describe('GET /api/state and /metrics', () => {
  it('returns the run as of its latest event, with the adapters on disk', async () => {
    const dashboard = await serve(sampleLog());
    const reply = await fetchRaw(dashboard.url, '/api/state');
    expect(reply.status).toBe(200);
    expect(reply.headers['cache-control']).toBe('no-store');
    const { state, downloads } = JSON.parse(reply.body.toString()) as {
      state: {
        facts: { runId: string };
        lastStep: { step: number };
        tokens: number;
        workers: unknown[];
      };
      downloads: unknown[];
    };
    expect(state.facts.runId).toBe('run-1');
    expect(state.lastStep.step).toBe(2);
    expect(state.tokens).toBe(384);
    expect(state.workers).toHaveLength(2);
    expect(downloads).toEqual([
      { name: 'step-000002', step: 2, files: ['adapter_config.json', 'adapter_model.safetensors'] },
    ]);
  });

  /** The /metrics samples, by name and labels. */
  async function scrape(url: string): Promise<Map<string, number>> {
    const reply = await fetchRaw(url, '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = new Map<string, number>();
    for (const line of reply.body.toString().split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
      expect(m, `not a sample line: ${line}`).not.toBeNull();
      samples.set(m![1]!, Number(m![2]));
    }
    return samples;
  }

  it("counts a DPO run's throughput in pairs, and gives its training and held-out reward figures", async () => {
    const events = RunEventLog.memory();
    const dashboard = await serve(events);
    events.emit({ type: 'run', facts: { ...FACTS, lossUnit: 'pairs' } });
    events.emit({
      ...{ ...STEP, step: 1, loss: 0.69, tokens: 6, tokensPerSecond: 11 },
      ...{ rewardAccuracy: 0.625, rewardMargin: 1.5 },
    });
    events.emit({ type: 'eval', step: 1, loss: 0.6, rewardAccuracy: 0.75 });
    const samples = await scrape(dashboard.url);
    expect(Object.fromEntries(samples)).toMatchObject({
      lorafleet_pairs_per_second: 11,
      lorafleet_pairs_total: 6,
      lorafleet_tokens_total: 0,
      lorafleet_reward_accuracy: 0.625,
      lorafleet_reward_margin: 1.5,
      lorafleet_eval_reward_accuracy: 0.75,
    });
    expect(samples.get('lorafleet_tokens_per_second')).toBe(0); // prom-client keeps a reset gauge at 0
  });

  it("gives a run of the token loss TRL's token accuracy and entropy, training and held-out", async () => {
    const events = RunEventLog.memory();
    const dashboard = await serve(events);
    events.emit({ type: 'run', facts: FACTS });
    events.emit({ ...STEP, step: 1, loss: 2.75, meanTokenAccuracy: 0.375, entropy: 2.5 });
    events.emit({ type: 'eval', step: 1, loss: 0.6, meanTokenAccuracy: 0.5, entropy: 2.25 });
    const samples = await scrape(dashboard.url);
    expect(Object.fromEntries(samples)).toMatchObject({
      lorafleet_token_accuracy: 0.375,
      lorafleet_entropy: 2.5,
      lorafleet_eval_token_accuracy: 0.5,
    });
    expect(samples.get('lorafleet_reward_accuracy')).toBe(0);
  });

  it("counts a KTO run's throughput in examples, and gives its margin and KL", async () => {
    const events = RunEventLog.memory();
    const dashboard = await serve(events);
    events.emit({ type: 'run', facts: { ...FACTS, lossUnit: 'examples' } });
    events.emit({
      ...{ ...STEP, step: 1, loss: 0.5, tokens: 8, tokensPerSecond: 9 },
      ...{ rewardMargin: 0.25, kl: 0.125 },
    });
    const samples = await scrape(dashboard.url);
    expect(Object.fromEntries(samples)).toMatchObject({
      lorafleet_examples_per_second: 9,
      lorafleet_examples_total: 8,
      lorafleet_pairs_total: 0,
      lorafleet_tokens_total: 0,
      lorafleet_reward_margin: 0.25,
      lorafleet_kl: 0.125,
    });
    expect(samples.get('lorafleet_tokens_per_second')).toBe(0);
  });

  it('serves the figures in Prometheus text format', async () => {
    const events = sampleLog();
    const dashboard = await serve(events);
    events.emit({ type: 'workers', generation: 2, workers: [worker(0), worker(1, 'lost')] });
    const samples = await scrape(dashboard.url);
    expect(samples.get('lorafleet_pairs_per_second')).toBe(0);
    expect(samples.get('lorafleet_pairs_total')).toBe(0);
    expect(samples.get('lorafleet_eval_reward_accuracy')).toBe(0);
    expect(samples.get('lorafleet_reward_accuracy')).toBe(0);
    expect(samples.get('lorafleet_reward_margin')).toBe(0);
    expect(samples.get('lorafleet_kl')).toBe(0);
    expect(samples.get('lorafleet_examples_total')).toBe(0);
    expect(samples.get('lorafleet_token_accuracy')).toBe(0);
    expect(samples.get('lorafleet_eval_token_accuracy')).toBe(0);
    expect(Object.fromEntries(samples)).toMatchObject({
      lorafleet_step: 2,
      lorafleet_train_loss: 5.25,
      lorafleet_eval_loss: 5.4,
      lorafleet_learning_rate: 1e-3,
      lorafleet_tokens_per_second: 4000,
      lorafleet_tokens_total: 384,
      lorafleet_workers: 1,
      lorafleet_ring_generation: 2,
      lorafleet_checkpoints_total: 1,
      'lorafleet_parameters{kind="trainable"}': 2048,
      'lorafleet_parameters{kind="total"}': 35_700,
      'lorafleet_wire_bytes_per_step{mode="lora"}': 8192,
      'lorafleet_wire_bytes_per_step{mode="full"}': 142_800,
      'lorafleet_worker_up{rank="0"}': 1,
      'lorafleet_worker_up{rank="1"}': 0,
      'lorafleet_worker_memory_bytes{rank="1"}': 123_456_789,
      'lorafleet_worker_step_phase_seconds{rank="0",phase="compute"}': 0.04,
      'lorafleet_worker_step_phase_seconds{rank="0",phase="allreduce"}': 0.005,
      'lorafleet_worker_step_phase_seconds{rank="0",phase="wait"}': 0.002,
    });
  });
});
