// `lorafleet keys`: a CURVE key pair for multi-host runs, as NAME.key (both
// keys, mode 0600) and NAME.pub (the public key), in the text format that
// @lorafleet/collective's readKeyPair / readPublicKeys read (see its curve.ts):
// `public-key = "..."` and `secret-key = "..."` lines, `#` comments.
import { writeKeyPair } from '@lorafleet/collective';
import { type CommandValues, defineCommand, UsageError } from '../args.js';

export const keysSpec = defineCommand({
  name: 'keys',
  summary:
    'Make a CURVE key pair (NAME.key, secret; NAME.pub, public) for encrypted, authenticated multi-host runs.',
  options: {
    out: {
      kind: 'string',
      value: 'DIR',
      required: true,
      description: 'folder for the key files (created if missing)',
    },
    name: {
      kind: 'string',
      value: 'NAME',
      required: true,
      description: 'the files are NAME.key and NAME.pub, e.g. coordinator or w1',
    },
  },
  details: [
    'One pair for the coordinator, one per worker; only .pub files leave their host.',
    'example:',
    '  lorafleet keys --out keys --name coordinator',
    '  lorafleet keys --out keys --name w1        (on the worker host; w1.pub goes to workers/)',
    '  lorafleet train ... --curve-key keys/coordinator.key --authorized-keys workers/',
    '  lorafleet-worker --coordinator tcp://HOST:PORT --curve-key keys/w1.key --server-key coordinator.pub',
  ].join('\n'),
});

export async function runKeys(o: CommandValues<typeof keysSpec>): Promise<void> {
  const dir = o.out;
  const name = o.name;
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) {
    throw new UsageError(
      `keys: --name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-'`,
    );
  }
  let files: ReturnType<typeof writeKeyPair>;
  try {
    files = writeKeyPair(dir, name);
  } catch (error) {
    throw new Error(`keys: ${(error as Error).message}`);
  }
  const { keyFile, publicFile } = files;
  const { publicKey } = files.keyPair;
  console.log(
    [
      `wrote ${keyFile} (secret, mode 0600: it stays on this host) and ${publicFile}`,
      `public key: ${publicKey}`,
      '',
      `as the coordinator's key: lorafleet train ... --curve-key ${keyFile} --authorized-keys DIR`,
      `  (DIR holds the workers' .pub files); give ${publicFile} to every worker host`,
      `as a worker's key: put ${publicFile} in the coordinator's --authorized-keys folder, then`,
      `  lorafleet-worker --coordinator tcp://HOST:PORT --curve-key ${keyFile} --server-key coordinator.pub`,
    ].join('\n'),
  );
}
