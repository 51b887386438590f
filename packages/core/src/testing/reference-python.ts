// The Python reference stack's interpreter (torch, transformers, peft, trl and tensorboard at
// pinned versions): scripts/reference-python.sh installs it in the
// repository's .venv-reference/, and `pnpm test` runs that script first.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The checkout's root: the nearest folder above this file with pnpm-workspace.yaml. */
function repositoryRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no pnpm-workspace.yaml above ${import.meta.dirname}`);
    dir = up;
  }
  return dir;
}

/** The environment's python; throws, saying how to make it, when it is missing. */
export function referencePython(): string {
  const venv = process.env.LORAFLEET_REFERENCE_VENV ?? join(repositoryRoot(), '.venv-reference');
  const python = join(venv, 'bin', 'python');
  if (!existsSync(join(venv, 'lorafleet-pins.txt')) || !existsSync(python)) {
    throw new Error(
      `the reference stack (torch, transformers, peft, trl, tensorboard) is missing from ${venv}: ` +
        'run `bash scripts/reference-python.sh` (`pnpm test` runs it first)',
    );
  }
  return python;
}

/**
 * Runs a reference script (the checkout's `test/reference/NAME.py`) on the
 * reference stack with `input` as its one JSON argument, and returns the
 * JSON of the last line it prints (libraries may print before it).
 */
export function referenceJson<T>(name: string, input: unknown): T {
  const script = join(repositoryRoot(), 'test', 'reference', `${name}.py`);
  const printed = execFileSync(referencePython(), [script, JSON.stringify(input)], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return JSON.parse(printed.trim().split('\n').at(-1)!) as T;
}
