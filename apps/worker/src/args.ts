// The daemon's options: flags first, then LORAFLEET_* environment variables
// (handy under a process manager), then defaults.
import { parseArgs } from 'node:util';
import { BACKENDS, type BackendName } from '@lorafleet/core';

export const HELP = `usage: lorafleet-worker --coordinator tcp://HOST:PORT [options]

Joins a \`lorafleet train --workers N\` (or \`--listen URL --expect N\`) run:
loads the base model and data the coordinator names, trains its share of every
step and all-reduces the LoRA gradients with the other workers. Exits 0 when
the coordinator shuts the run down.

options:
  --coordinator URL   the coordinator's control endpoint (env LORAFLEET_COORDINATOR)
  --backend NAME      compute backend: ${BACKENDS.join(', ')} (env LORAFLEET_BACKEND; default wasm)
  --timeout SECONDS   give up after this long without a word from the coordinator
                      (env LORAFLEET_TIMEOUT; default 60)
  --ring-host HOST    address the ring socket listens on and advertises
                      (env LORAFLEET_RING_HOST; default 127.0.0.1)
  -h, --help          this text`;

export interface DaemonOptions {
  coordinator: string;
  backend: BackendName;
  timeoutMs: number;
  ringHost: string;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** The options, or 'help'; throws UsageError naming the bad flag. */
export function parseDaemonArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): DaemonOptions | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        coordinator: { type: 'string' },
        backend: { type: 'string' },
        timeout: { type: 'string' },
        'ring-host': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; see --help`);
  }
  if (values.help) return 'help';
  const pick = (flag: string, variable: string): string | undefined =>
    (values[flag] as string | undefined) ?? (env[variable] || undefined);
  const coordinator = pick('coordinator', 'LORAFLEET_COORDINATOR');
  if (!coordinator) {
    throw new UsageError(
      '--coordinator (or LORAFLEET_COORDINATOR) is required: the tcp://HOST:PORT the coordinator listens on',
    );
  }
  if (!/^tcp:\/\/[^:/]+:\d+$/.test(coordinator)) {
    throw new UsageError(`--coordinator ${coordinator}: expected tcp://HOST:PORT`);
  }
  const backend = pick('backend', 'LORAFLEET_BACKEND') ?? 'wasm';
  if (!BACKENDS.includes(backend as BackendName)) {
    throw new UsageError(`--backend ${backend}: choose one of ${BACKENDS.join(', ')}`);
  }
  const timeout = Number(pick('timeout', 'LORAFLEET_TIMEOUT') ?? 60);
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new UsageError(`--timeout must be a positive number of seconds`);
  }
  return {
    coordinator,
    backend: backend as BackendName,
    timeoutMs: timeout * 1000,
    ringHost: pick('ring-host', 'LORAFLEET_RING_HOST') ?? '127.0.0.1',
  };
}
