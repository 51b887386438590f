// The Python reference stack's interpreter (torch, transformers, peft, trl at
// pinned versions): scripts/reference-python.sh installs it, and `pnpm test`
// runs that script first.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

/** The environment's python; throws, saying how to make it, when it is missing. */
export function referencePython(): string {
  const venv = process.env.LORAFLEET_REFERENCE_VENV ?? join(root, '.venv-reference');
  const python = join(venv, 'bin', 'python');
  if (!existsSync(join(venv, 'lorafleet-pins.txt')) || !existsSync(python)) {
    throw new Error(
      `the reference stack (torch, transformers, peft, trl) is missing from ${venv}: ` +
        'run `bash scripts/reference-python.sh` (`pnpm test` runs it first)',
    );
  }
  return python;
}
