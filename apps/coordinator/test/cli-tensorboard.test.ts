// --report-to tensorboard: a run's metrics.jsonl lines as TensorBoard
// scalars under transformers' and TRL's names, in a file that TensorBoard's
// own reader (EventAccumulator, the reference stack) reads back: every step's
// train/loss, train/learning_rate and train/grad_norm and each evaluation's
// eval/loss, equal to metrics.jsonl in float32. Also the framing's checksum
// against CRC-32C's check value, and the tag names.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { referenceJson } from '@lorafleet/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c, tensorBoardTag } from '../src/observe/tensorboard.js';
import {
  SEQ_LEN,
  lorafleetOk,
  metricLines,
  numberedPatternRecords,
  removeDir,
  trainFixture,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('tensorboard', numberedPatternRecords(24)));
}, 300_000);

afterAll(() => removeDir(dir));

describe('--report-to tensorboard', () => {
  it("names TRL's logs as transformers' TensorBoardCallback does; CRC-32C's check value", () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(tensorBoardTag('loss')).toBe('train/loss');
    expect(tensorBoardTag('lr')).toBe('train/learning_rate');
    expect(tensorBoardTag('rewardAccuracy')).toBe('train/rewards/accuracies');
    expect(tensorBoardTag('evalLoss')).toBe('eval/loss');
    expect(tensorBoardTag('evalMeanTokenAccuracy')).toBe('eval/mean_token_accuracy');
    expect(tensorBoardTag('allReduceShare')).toBe('train/allReduceShare');
    expect(tensorBoardTag('step')).toBeNull();
  });

  it('writes every step and evaluation, which TensorBoard reads back as metrics.jsonl holds them', async () => {
    const out = join(dir!, 'run');
    const heldOut = await writeJsonl(join(dir!, 'held-out.jsonl'), numberedPatternRecords(6));
    const { stdout } = await lorafleetOk([
      'train',
      ...['--model', model, '--data', data, '--eval-data', heldOut, '--out', out],
      ...['--steps', '4', '--eval-every', '2', '--seq-len', SEQ_LEN, '--report-to', 'tensorboard'],
    ]);
    const files = await readdir(join(out, 'runs'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
    expect(stdout).toContain(`(tensorboard --logdir ${join(out, 'runs')})`);
    const scalars = referenceJson<Record<string, [number, number][]>>('tensorboard_scalars', {
      dir: join(out, 'runs'),
    });
    const lines = await metricLines(out);
    const series = (key: string) =>
      lines.filter((l) => typeof l[key] === 'number').map((l) => [l.step!, Math.fround(l[key]!)]);
    expect(scalars['train/loss']).toEqual(series('loss'));
    expect(scalars['train/learning_rate']).toEqual(series('lr'));
    expect(scalars['train/grad_norm']).toEqual(series('gradNorm'));
    expect(scalars['train/mean_token_accuracy']).toEqual(series('meanTokenAccuracy'));
    expect(scalars['eval/loss']).toEqual(series('evalLoss'));
    expect(scalars['eval/loss']!.map(([step]) => step)).toEqual([2, 4]);
    expect(scalars['train/loss']!.map(([step]) => step)).toEqual([1, 2, 3, 4]);
  });
});
