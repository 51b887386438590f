// The preference objectives against PyTorch: reference/preference_torch.py
// (Debian's python3-torch; no code shared) rebuilds a GPT-2 folder and its
// PEFT adapter in float64, computes each objective's loss as TRL's trainers
// write it (the reference: the same model with the adapter off) and takes its
// LoRA gradient by autograd. The project's loss (objective.ts, summed over
// pairs) and its gradient, exported as a PEFT adapter, equal them: an
// independent model, loss and differentiation, for DPO (sigmoid, IPO,
// hinge), ORPO, SimPO, CPO-SimPO and CPO (sigmoid, IPO).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '@lorafleet/core';
import { type PreferenceSettings, objectiveOf } from '../src/index.js';
import { T, pairBatch } from './pair-fixtures.js';
import {
  type ReferenceGrads,
  adapterFixture,
  expectGradsLike,
} from './preference-python-fixture.js';

const run = promisify(execFile);
const REFERENCE = join(import.meta.dirname, 'reference', 'preference_torch.py');
/** Debian's python3 with python3-torch (scripts/test-machine.sh installs it). */
const PYTHON = '/usr/bin/python3';

const SETTINGS: PreferenceSettings[] = [
  { kind: 'dpo', beta: 0.5 },
  { kind: 'dpo', beta: 0.5, loss: 'ipo' },
  { kind: 'dpo', beta: 0.2, loss: 'hinge' },
  { kind: 'orpo', beta: 0.3 },
  { kind: 'simpo', beta: 2, gamma: 0.7 },
  { kind: 'simpo', beta: 2, gamma: 0.7, alpha: 0.4 },
  { kind: 'cpo', beta: 0.05, alpha: 0.8 },
  { kind: 'cpo', beta: 0.5, alpha: 0.3, loss: 'ipo' },
];

interface TorchCase {
  loss: number;
  grads: ReferenceGrads;
}

let root = '';

beforeAll(async () => {
  await useBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-preference-torch-'));
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('the preference objectives against PyTorch (TRL formulas, autograd)', () => {
  it('every loss and its LoRA gradient equal those of an independent float64 GPT-2 in torch', async () => {
    const f = await adapterFixture(root);
    const batch = pairBatch(3, 51);
    const rows = (v: Int32Array) =>
      Array.from({ length: batch.batchSize }, (_, b) =>
        Array.from(v.subarray(b * 2 * T, (b + 1) * 2 * T)),
      );
    const casesPath = join(root, 'cases.json');
    const cases = { ids: rows(batch.ids), labels: rows(batch.labels), settings: SETTINGS };
    await writeFile(casesPath, JSON.stringify(cases));
    const { stdout } = await run(PYTHON, [REFERENCE, f.base, f.adapter, casesPath], {
      maxBuffer: 64 << 20,
    });
    const torch = (JSON.parse(stdout) as { cases: TorchCase[] }).cases;

    for (const [i, s] of SETTINGS.entries()) {
      const label = JSON.stringify(s);
      f.trained.params.write(f.theta);
      const loss = objectiveOf(s).loss(f.model, batch, {});
      const { loss: value, grads } = f.trained.params.lossAndGrads(() => loss.sum());
      loss.dispose();
      expect(Math.abs(value - torch[i]!.loss), label).toBeLessThan(
        2e-5 * Math.max(1, Math.abs(torch[i]!.loss)),
      );
      await expectGradsLike(f, grads, join(root, `grads-${i}`), torch[i]!.grads, label, {
        key: (path) => path.replace(/^transformer\./, ''),
        minLargest: 1e-3,
      });
    }
    f.model.dispose();
  }, 120_000);
});
