// `train --init-adapter DIR`: the adapter's lora_dropout holds unless
// --lora-dropout is given (docs/lora-options.md). Which options were given
// must survive the copy of the options that `train` makes before it plans
// the run (withValues); a plain spread dropped it, and --lora-dropout was
// silently ignored.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  lorafleetOk,
  numberedPatternRecords,
  readJson,
  removeDir,
  trainFixture,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('init-dropout', numberedPatternRecords(12)));
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...extra: string[]) =>
  lorafleetOk([
    ...['train', '--model', model, '--data', data, '--out', join(dir!, out)],
    ...['--seq-len', '32', '--steps', '1', '--batch-size', '2', ...extra],
  ]);

const dropoutOf = async (out: string) =>
  (await readJson<{ lora_dropout: number }>(join(dir!, out, 'adapter', 'adapter_config.json')))
    .lora_dropout;

describe('train --init-adapter', () => {
  it("keeps the adapter's lora_dropout, unless --lora-dropout is given", async () => {
    await train('start', '--lora-dropout', '0.1');
    expect(await dropoutOf('start')).toBe(0.1);
    const start = join(dir!, 'start', 'adapter');
    await train('kept', '--init-adapter', start);
    expect(await dropoutOf('kept')).toBe(0.1);
    await train('given', '--init-adapter', start, '--lora-dropout', '0.3');
    expect(await dropoutOf('given')).toBe(0.3);
  }, 120_000);
});
