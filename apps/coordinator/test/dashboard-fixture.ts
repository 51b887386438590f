// The dashboard server tests' fixture (dashboard-server.test.ts,
// dashboard-files.test.ts): a run folder with a checkpoint, sample events,
// a dashboard on 127.0.0.1:0, raw HTTP requests and an event-stream reader.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { type IncomingMessage, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, vi } from 'vitest';
import { type Dashboard, startDashboard } from '../src/dashboard/server.js';
import { dashboardDist } from '../src/dashboard/files.js';
import {
  type RunEvent,
  type RunFacts,
  type RunEventInit,
  RunEventLog,
  type WorkerInfo,
} from '../src/observe/events.js';
import { REPO_ROOT, makeTempDir, removeDir } from './helpers.js';

/** The run folder the dashboards serve: a checkpoint with an adapter, and a file not for download. */
export let runDir = '';
const open: Dashboard[] = [];

/**
 * Registers the file's hooks: the dashboard's page built if it is not, the
 * run folder made, and every dashboard started by `serve` closed after each test.
 */
export function useDashboardFixture(): void {
  beforeAll(async () => {
    if (!existsSync(join(dashboardDist(), 'index.html'))) {
      await new Promise<void>((resolve, reject) =>
        execFile(
          'pnpm',
          ['--filter', '@lorafleet/dashboard', 'build'],
          { cwd: REPO_ROOT },
          (err, _out, stderr) =>
            err ? reject(new Error(`building the dashboard failed: ${stderr}`)) : resolve(),
        ),
      );
    }
    runDir = await makeTempDir('dashboard');
    const checkpoint = join(runDir, 'checkpoints', 'step-000002');
    await mkdir(checkpoint, { recursive: true });
    await writeFile(join(checkpoint, 'adapter_config.json'), '{"peft_type":"LORA"}');
    await writeFile(join(checkpoint, 'adapter_model.safetensors'), Buffer.from([1, 2, 3, 4]));
    await writeFile(join(checkpoint, 'optimizer.safetensors'), Buffer.from([9]));
    await writeFile(join(runDir, 'secret.txt'), 'not for download');
  }, 120_000);

  afterEach(async () => {
    await Promise.all(open.splice(0).map((d) => d.close()));
  });

  afterAll(() => removeDir(runDir));
}

export function worker(rank: number, status: WorkerInfo['status'] = 'training'): WorkerInfo {
  return {
    rank,
    workerId: `w${rank}`,
    host: 'box',
    pid: 100 + rank,
    device: 'cpu',
    backend: 'wasm',
    status,
    lastHeartbeatMs: 1_700_000_000_000,
    rssBytes: 123_456_789,
    computeMs: 40,
    allReduceMs: 5,
    waitMs: 2,
    ringNext: (rank + 1) % 2,
  };
}

export const STEP = {
  type: 'step',
  epoch: 0,
  lr: 1e-3,
  tokens: 192,
  tokensPerSecond: 4000,
  gradNorm: 0.5,
  seconds: 0.05,
} as const;

export const FACTS: RunFacts = {
  runId: 'run-1',
  model: 'models/tiny',
  mode: 'lora',
  totalParameters: 35_700,
  trainableParameters: 2_048,
  lora: { r: 8, alpha: 16, dropout: 0, targets: ['c_attn'] },
  backend: 'wasm',
  workers: 2,
  steps: 40,
  batchSize: 6,
  seqLen: 32,
  wireBytesPerStep: 8_192,
  fullFinetuneWireBytesPerStep: 142_800,
};

/** A log with a run's first events: facts, two steps, an eval, two workers, a checkpoint. */
export function sampleLog(): RunEventLog {
  const events = RunEventLog.memory();
  const init: RunEventInit[] = [
    { type: 'run', facts: FACTS },
    { ...STEP, step: 1, loss: 5.5 },
    { ...STEP, step: 2, loss: 5.25 },
    { type: 'eval', step: 2, loss: 5.4 },
    { type: 'workers', generation: 1, workers: [worker(0), worker(1)] },
    { type: 'checkpoint', step: 2, path: join(runDir, 'checkpoints', 'step-000002') },
  ];
  for (const event of init) events.emit(event);
  return events;
}

export async function serve(
  events: RunEventLog,
  more: Partial<Parameters<typeof startDashboard>[0]> = {},
): Promise<Dashboard> {
  const dashboard = await startDashboard({
    events,
    listen: '127.0.0.1:0',
    runDir,
    log: () => undefined,
    ...more,
  });
  open.push(dashboard);
  return dashboard;
}

export interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** One raw HTTP request (the path is sent as given, not normalized). */
export function fetchRaw(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export interface SseMessage {
  event: string;
  id?: string;
  data: string;
}

/** An open event stream: the messages and comments so far, and a way to wait for more. */
export function openStream(base: string, headers: Record<string, string> = {}) {
  const url = new URL(base);
  const messages: SseMessage[] = [];
  let comments = 0;
  let buffer = '';
  let response: IncomingMessage | undefined;
  const req = request(
    { host: url.hostname, port: url.port, path: `/api/events${url.search}`, headers },
    (res) => {
      response = res;
      res.setEncoding('utf8').on('data', (text: string) => {
        buffer += text;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message: SseMessage = { event: 'message', data: '' };
          let fields = 0;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments++;
            const m = /^(event|id|data): ?(.*)$/.exec(line);
            if (!m) continue;
            fields++;
            if (m[1] === 'data') message.data += m[2];
            else message[m[1] as 'event' | 'id'] = m[2]!;
          }
          if (fields > 0) messages.push(message);
        }
      });
    },
  );
  req.end();
  const events = () =>
    messages.filter((m) => m.event === 'message').map((m) => JSON.parse(m.data) as RunEvent);
  return {
    messages,
    events,
    comments: () => comments,
    response: () => response,
    until: (check: () => boolean) =>
      vi.waitFor(() => expect(check()).toBe(true), { timeout: 5000, interval: 20 }),
    close: () => req.destroy(),
  };
}
