// `lorafleet-worker`: a thin shell over @lorafleet/worker's runWorker. Exit
// status: 0 after a clean shutdown, 1 on any failure, 2 on bad usage.
import { runWorker } from '@lorafleet/worker';
import { HELP, UsageError, parseDaemonArgs } from './args.js';

async function main(argv: string[]): Promise<number> {
  try {
    const options = parseDaemonArgs(argv);
    if (options === 'help') {
      console.log(HELP);
      return 0;
    }
    await runWorker({
      ...options,
      log: (line) => console.error(`lorafleet-worker: ${line}`),
    });
    return 0;
  } catch (error) {
    console.error(`lorafleet-worker: ${(error as Error).message}`);
    if (!(error instanceof UsageError) && process.env.LORAFLEET_DEBUG && error instanceof Error)
      console.error(error.stack);
    return error instanceof UsageError ? 2 : 1;
  }
}

// Exit explicitly: tfjs and ZeroMQ keep handles that would hold the process open.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
