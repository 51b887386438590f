// What the preference tests against Python references share
// (preference-torch.test.ts: PyTorch; preference-trl.test.ts: TRL): a GPT-2
// folder with a PEFT adapter whose B is not zero (the policy is not the
// reference), saved where a Python script reads it, and the comparison of
// the project's LoRA gradient, exported as a PEFT adapter, with the script's.
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadPeftAdapter, savePeftAdapter } from '@lorafleet/core';
import {
  type PeftLoraOptions,
  addPeftLora,
  exportPeftAdapter,
  loadModel,
  modelConfigFromJson,
  randomModelWeights,
  writeModelFolder,
} from '../src/index.js';
import { GPT2 } from './pair-fixtures.js';
import { normals } from './llama-fixtures.js';

/** LoRA on every GPT-2 linear kind: 2 layers x c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj. */
export const LORA: PeftLoraOptions = {
  r: 4,
  alpha: 8,
  dropout: 0,
  rslora: false,
  targets: ['c_attn', 'c_proj', 'c_fc'],
};
const MODULES = 8;

export interface AdapterFixture {
  model: Awaited<ReturnType<typeof loadModel>>['model'];
  trained: Awaited<ReturnType<typeof addPeftLora>>;
  /** The adapter's values (A kaiming, B random). */
  theta: Float32Array;
  /** The base model folder and the adapter folder the scripts read. */
  base: string;
  adapter: string;
  /** Saves the trained parameters' current values as a PEFT adapter in `dir`. */
  save: (dir: string) => Promise<void>;
}

/** The GPT-2 of pair-fixtures in `root`/base, with LoRA values saved in `root`/adapter. */
export async function adapterFixture(root: string): Promise<AdapterFixture> {
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
  const adapter = join(root, 'adapter');
  await save(adapter);
  return { model, trained, theta, base, adapter, save };
}

/** A script's LoRA gradient: module path -> A's and B's, flat. */
export type ReferenceGrads = Record<string, { a: number[]; b: number[] }>;

/**
 * `grads` (the project's, in the trained parameters' order) written as a PEFT
 * adapter in `dir`, read back, and compared module by module with the
 * reference's (keyed by `key(path)`): within 1e-5 of its largest element,
 * which must exceed `minLargest` (a gradient that vanished proves nothing).
 */
export async function expectGradsLike(
  f: AdapterFixture,
  grads: Float32Array,
  dir: string,
  reference: ReferenceGrads,
  label: string,
  { key = (path: string) => path, minLargest = 1e-4, tolerance = 1e-5 } = {},
): Promise<void> {
  f.trained.params.write(grads); // where the adapter's values go: they leave as PEFT's A and B
  await f.save(dir);
  const ours = await loadPeftAdapter(dir);
  let [largest, diff, modules] = [0, 0, 0];
  for (const [path, m] of ours.modules) {
    const ref = reference[key(path)];
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
  expect(modules, label).toBe(MODULES);
  expect(largest, label).toBeGreaterThan(minLargest);
  expect(diff, label).toBeLessThan(tolerance * largest);
  f.trained.params.write(f.theta);
}
