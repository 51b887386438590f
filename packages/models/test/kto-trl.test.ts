// KTO against TRL itself: reference/preference_trl.py builds trl.KTOTrainer
// as TRL's LoRA recipe does (transformers' GPT-2 in float64, the adapter's
// LoraConfig), loads the project's adapter values into it, and takes TRL's
// own loss (`_compute_loss` on its DataCollatorForUnpairedPreference batch,
// with each example's KL completion), its LoRA gradient, its KL estimate and
// its rewards/*, logps/*, entropy, logits/* and num_tokens logs.
// The project's KTO objective, its KL from the objective's shared sums, gives
// the same (the reference stack: scripts/reference-python.sh).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '@lorafleet/core';
import { referencePython } from '@lorafleet/core/testing';
import {
  type KtoObjective,
  inputTokenCounts,
  ktoHalf,
  ktoKl,
  ktoLogs,
  ktoStatSums,
  objectiveOf,
} from '../src/index.js';
import { pairBatch } from './pair-fixtures.js';
import { examplesOf, ktoBatch } from './kto-fixtures.js';
import {
  type ReferenceGrads,
  adapterFixture,
  expectGradsLike,
} from './preference-python-fixture.js';

const run = promisify(execFile);
const REFERENCE = join(import.meta.dirname, 'reference', 'preference_trl.py');

let root = '';

beforeAll(async () => {
  await useBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-kto-trl-'));
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('KTO against trl.KTOTrainer (its own loss, transformers, peft)', () => {
  it('loss, LoRA gradient, KL estimate and logs: kto and apo_zero_unpaired, with weights', async () => {
    const f = await adapterFixture(root);
    const examples = examplesOf(pairBatch(3, 51)); // 6 examples, 3 desirable
    const { batch, trl } = ktoBatch(examples);
    const cases: { ours: KtoObjective; trl: Record<string, unknown> }[] = [
      { ours: { kind: 'kto', beta: 0.5 }, trl: { loss: 'kto', beta: 0.5 } },
      {
        ours: { kind: 'kto', beta: 0.3, desirableWeight: 1.5, undesirableWeight: 0.7 },
        trl: { loss: 'kto', beta: 0.3, desirable_weight: 1.5, undesirable_weight: 0.7 },
      },
      {
        ours: { kind: 'kto', beta: 0.5, loss: 'apo_zero_unpaired' },
        trl: { loss: 'apo_zero_unpaired', beta: 0.5 },
      },
    ];
    const casesPath = join(root, 'kto.json');
    const settings = cases.map((c) => ({ trainer: 'kto', ...c.trl }));
    await writeFile(casesPath, JSON.stringify({ examples: trl, settings }));
    const { stdout } = await run(referencePython(), [REFERENCE, f.base, f.adapter, casesPath], {
      maxBuffer: 64 << 20,
    });
    type Want = { loss: number; grads: ReferenceGrads; logs: Record<string, number> };
    const want = (JSON.parse(stdout) as { cases: Want[] }).cases;
    const B = batch.batchSize;
    for (const [i, c] of cases.entries()) {
      const label = JSON.stringify(c.trl);
      f.trained.params.write(f.theta);
      const objective = objectiveOf(c.ours);
      const shared = await objective.shared?.sums(f.model, batch);
      if (c.ours.loss !== 'apo_zero_unpaired') {
        // TRL's KL: the batch's mean log-ratio on the KL sequences, clamped at 0.
        expect(Math.abs(ktoKl(shared!) - want[i]!.logs.kl!), label).toBeLessThan(1e-6);
        expect(want[i]!.logs.kl, label).toBeGreaterThan(0); // the clamp did not hide it
      } else expect(shared).toBeUndefined();
      const loss = objective.loss(f.model, batch, {}, shared);
      const { loss: sum, grads } = f.trained.params.lossAndGrads(() => loss.sum());
      const stats = ktoStatSums(await loss.stats()!.data());
      loss.dispose();
      // TRL's logs: rewards/* and logps/* over each class's examples, and the KL.
      const logs = ktoLogs(stats, B, shared ? ktoKl(shared) : 0);
      const names: Record<string, number | undefined> = {
        'rewards/chosen': logs.rewardChosen,
        'rewards/rejected': logs.rewardRejected,
        'rewards/margins': logs.rewardMargin,
        'logps/chosen': logs.logpsChosen,
        'logps/rejected': logs.logpsRejected,
        kl: logs.kl,
        // KTOTrainer's token logs over the completions, and num_tokens as a run counts it
        entropy: logs.entropy,
        'logits/chosen': logs.logitsChosen,
        'logits/rejected': logs.logitsRejected,
        num_tokens: inputTokenCounts(ktoHalf(batch, 0)).reduce((a, b) => a + b, 0),
      };
      expect(Object.keys(want[i]!.logs).sort()).toEqual(Object.keys(names).sort());
      for (const [key, value] of Object.entries(want[i]!.logs))
        expect(Math.abs(names[key]! - value), `${label}: ${key}`).toBeLessThan(
          1e-5 * Math.max(1, Math.abs(value)),
        );
      // The project sums over examples; TRL takes the mean.
      expect(Math.abs(sum / B - want[i]!.loss), label).toBeLessThan(1e-6);
      const scaled = grads.map((g) => g / B);
      await expectGradsLike(f, scaled, join(root, `grads-kto-${i}`), want[i]!.grads, label);
    }
    f.model.dispose();
  }, 120_000);
});
