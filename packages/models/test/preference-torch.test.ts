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
import { loadPeftAdapter, savePeftAdapter, useBackend } from '@lorafleet/core';
import {
  type PeftLoraOptions,
  type PreferenceSettings,
  addPeftLora,
  exportPeftAdapter,
  loadModel,
  modelConfigFromJson,
  objectiveOf,
  randomModelWeights,
  writeModelFolder,
} from '../src/index.js';
import { GPT2, T, pairBatch } from './pair-fixtures.js';
import { normals } from './llama-fixtures.js';

const run = promisify(execFile);
const REFERENCE = join(import.meta.dirname, 'reference', 'preference_torch.py');
/** Debian's python3 with python3-torch (scripts/test-machine.sh installs it). */
const PYTHON = '/usr/bin/python3';
const LORA: PeftLoraOptions = {
  r: 4,
  alpha: 8,
  dropout: 0,
  rslora: false,
  targets: ['c_attn', 'c_proj', 'c_fc'],
};

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
  grads: Record<string, { a: number[]; b: number[] }>;
}

let root = '';

beforeAll(async () => {
  await useBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-preference-torch-'));
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('the preference objectives against PyTorch (TRL formulas, autograd)', () => {
  it('every loss and its LoRA gradient equal those of an independent float64 GPT-2 in torch', async () => {
    const base = join(root, 'base');
    const config = modelConfigFromJson(GPT2, 'gpt2 test config');
    await writeModelFolder(base, config, randomModelWeights(config, 41));
    const { model } = await loadModel(base);
    const trained = await addPeftLora(model, 'default', LORA, { kind: 'kaiming' }, 5);
    const randn = normals(6);
    const theta = trained.params.read().map((v) => v + 0.3 * randn()); // B != 0: policy != reference
    trained.params.write(theta);
    const save = async (dir: string) =>
      savePeftAdapter(
        dir,
        await exportPeftAdapter(trained, 'default', LORA, {
          initLoraWeights: true,
          baseModelNameOrPath: base,
          taskType: 'CAUSAL_LM',
        }),
      );
    await save(join(root, 'adapter'));

    const batch = pairBatch(3, 51);
    const rows = (v: Int32Array) =>
      Array.from({ length: batch.batchSize }, (_, b) =>
        Array.from(v.subarray(b * 2 * T, (b + 1) * 2 * T)),
      );
    const casesPath = join(root, 'cases.json');
    const cases = { ids: rows(batch.ids), labels: rows(batch.labels), settings: SETTINGS };
    await writeFile(casesPath, JSON.stringify(cases));
    const { stdout } = await run(PYTHON, [REFERENCE, base, join(root, 'adapter'), casesPath], {
      maxBuffer: 64 << 20,
    });
    const torch = (JSON.parse(stdout) as { cases: TorchCase[] }).cases;

    for (const [i, s] of SETTINGS.entries()) {
      const label = JSON.stringify(s);
      trained.params.write(theta);
      const loss = objectiveOf(s).loss(model, batch, {});
      const { loss: value, grads } = trained.params.lossAndGrads(() => loss.sum());
      loss.dispose();
      expect(Math.abs(value - torch[i]!.loss), label).toBeLessThan(
        2e-5 * Math.max(1, Math.abs(torch[i]!.loss)),
      );
      // The gradient, written where the adapter's values go, leaves as PEFT's A and B.
      trained.params.write(grads);
      await save(join(root, `grads-${i}`));
      const ours = await loadPeftAdapter(join(root, `grads-${i}`));
      let [largest, diff, modules] = [0, 0, 0];
      for (const [path, m] of ours.modules) {
        const ref = torch[i]!.grads[path.replace(/^transformer\./, '')];
        expect(ref, `${label}: ${path}`).toBeDefined();
        for (const [got, want] of [
          [m.a, ref!.a],
          [m.b, ref!.b],
        ] as const) {
          expect(got.length).toBe(want.length);
          got.forEach((g, j) => {
            largest = Math.max(largest, Math.abs(want[j]!));
            diff = Math.max(diff, Math.abs(g - want[j]!));
          });
        }
        modules++;
      }
      expect(modules, label).toBe(8); // 2 layers x c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
      expect(largest, label).toBeGreaterThan(1e-3);
      expect(diff, label).toBeLessThan(1e-5 * largest);
    }
    trained.params.write(theta);
    model.dispose();
  }, 120_000);
});
