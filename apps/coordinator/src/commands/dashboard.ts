// `lorafleet dashboard --run DIR`: the training dashboard over a run's
// events.jsonl, live or finished, so the view of a run is also its post-mortem.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { isLoopback } from '@lorafleet/protocol';
import { type CommandValues, defineCommand, UsageError } from '../args.js';
import { parseListen } from '../dashboard/listen.js';
import { startDashboard } from '../dashboard/server.js';
import { EVENTS_FILE, RunEventLog } from '../observe/events.js';

export const dashboardSpec = defineCommand({
  name: 'dashboard',
  summary:
    "Open a run's dashboard from its folder (OUT/events.jsonl): loss, learning rate, throughput, workers, checkpoints and the event log, as they were. Serves until Ctrl-C.",
  options: {
    run: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'the --out folder of a run',
    },
    listen: {
      kind: 'string',
      value: 'HOST:PORT',
      default: '127.0.0.1:7777',
      description: 'where to serve it (port 0: any free one)',
    },
    token: {
      kind: 'string',
      value: 'TOKEN',
      description:
        'required by every request (as ?token= or a Bearer header); needed to listen on a non-loopback address',
    },
  },
  details: [
    'examples:',
    '  lorafleet dashboard --run runs/a',
    '  lorafleet dashboard --run runs/a --listen 0.0.0.0:8080 --token "$(openssl rand -hex 16)"',
    '',
    'The run need not be finished: this shows the events written so far.',
    'Live runs serve the same view with `lorafleet train --dashboard 127.0.0.1:7777`.',
  ].join('\n'),
});

export async function runDashboard(o: CommandValues<typeof dashboardSpec>): Promise<void> {
  const run = o.run;
  const file = join(run, EVENTS_FILE);
  await access(file).catch(() => {
    throw new UsageError(
      `dashboard: no ${file}: --run must be the --out folder of a \`lorafleet train\` run`,
    );
  });
  const listen = o.listen;
  const token = o.token;
  let host: string;
  try {
    host = parseListen(listen).host;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (token === undefined && !isLoopback(host)) {
    throw new UsageError(
      `dashboard: --listen ${listen} is reachable from other machines: add --token TOKEN (every request must then carry it) or listen on 127.0.0.1`,
    );
  }
  const events = RunEventLog.replay(run);
  const dashboard = await startDashboard({
    events,
    listen,
    runDir: run,
    log: (line) => console.error(line),
    ...(token !== undefined ? { token } : {}),
  });
  console.log(`dashboard: ${dashboard.url}`);
  console.log(`${events.history().length} events from ${file}; Ctrl-C to stop`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await dashboard.close();
}
