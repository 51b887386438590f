// The body of a worker's heartbeat thread (started by heartbeat.ts as a
// worker_thread; never imported): a DEALER of its own to the coordinator's
// ROUTER, a CURVE client with the worker's keys exactly like the main link,
// sending one Heartbeat a second, and one at once when the main thread asks.
// Each carries the compute progress the main thread shares (progress.ts).
// A micro-batch that blocks the main thread cannot delay it; a stopped
// process (SIGSTOP) stops it too, which is what the coordinator must see.
import { parentPort, workerData } from 'node:worker_threads';
import { Dealer } from 'zeromq';
import { curveClientOptions } from '@lorafleet/collective';
import { encodeControl } from '@lorafleet/protocol';
import type { HeartbeatCommand, HeartbeatThreadData } from './heartbeat.js';
import { ComputeProgress } from './progress.js';

const data = workerData as HeartbeatThreadData;
const progress = new ComputeProgress(data.buffer);
const socket = new Dealer({
  // A heartbeat that cannot leave within one interval is stale: drop it.
  sendTimeout: data.intervalMs,
  linger: 0,
  ...(data.curve && curveClientOptions(data.curve.keyPair, data.curve.serverPublicKey)),
});
socket.connect(data.endpoint);

/** One send at a time on the socket (zeromq.js refuses a second while one is pending). */
let sending: Promise<void> = Promise.resolve();

function beat(): void {
  sending = sending
    .then(() => {
      const reading = progress.read();
      return socket.send(
        encodeControl({
          runId: data.runId,
          body: {
            case: 'heartbeat',
            value: {
              sentAtMs: Date.now(),
              state: reading.state,
              rssBytes: process.memoryUsage.rss(),
              stepsDone: reading.stepsDone,
              heartbeatId: data.heartbeatId,
              progress: reading.progress,
              stalledMs: reading.stalledMs,
              computeLimitMs: reading.computeLimitMs,
              warmingUp: reading.warmingUp,
            },
          },
        }),
      );
    })
    // A coordinator that is gone or slow: the main link's timeout tells that story.
    .catch(() => undefined);
}

const timer = setInterval(beat, data.intervalMs);
beat();
parentPort!.on('message', (command: HeartbeatCommand) => {
  if (command === 'beat') return beat();
  clearInterval(timer);
  void sending.then(() => {
    socket.close();
    parentPort!.close();
  });
});
