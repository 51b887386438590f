// DPO against TRL itself: reference/preference_trl.py builds trl.DPOTrainer
// as TRL's LoRA recipe does (transformers' GPT-2 in float64, the adapter's
// LoraConfig), loads the project's adapter values into it, and takes TRL's
// own loss (`_compute_loss` on its DataCollatorForPreference batch), its LoRA
// gradient and its reward, log-probability and token logs (DPOTrainer's
// mean_token_accuracy, entropy, logits/chosen, logits/rejected, num_tokens) for every
// loss type the project has. The project's loss, gradient and pair statistics equal them (the reference stack: scripts/reference-python.sh).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '@lorafleet/core';
import { referencePython } from '@lorafleet/core/testing';
import {
  type DpoLossType,
  type FDivergence,
  IGNORE_INDEX,
  REFERENCE_ADAPTER,
  type PreferenceSettings,
  type TokenBatch,
  addPeftLora,
  inputTokenCounts,
  objectiveOf,
  pairSequences,
  pairStatSums,
} from '../src/index.js';
import { T, pairBatch, withPredictedTokens } from './pair-fixtures.js';
import { normals } from './llama-fixtures.js';
import {
  type AdapterFixture,
  LORA,
  type ReferenceGrads,
  adapterFixture,
  expectGradsLike,
} from './preference-python-fixture.js';

const run = promisify(execFile);
const REFERENCE = join(import.meta.dirname, 'reference', 'preference_trl.py');

/**
 * A case: the project's settings, and TRL's trainer and config for the same
 * loss; the gradient's tolerance relative to its largest value where not 1e-5.
 */
type Case = { ours: PreferenceSettings; trl: Record<string, unknown>; tolerance?: number };

/** Every DPO loss type the project has, with TRL's label_smoothing where it reads one. */
const DPO_CASES: Case[] = (
  [
    { loss: 'sigmoid', beta: 0.5 },
    { loss: 'ipo', beta: 0.5 },
    { loss: 'hinge', beta: 0.2 },
    { loss: 'robust', beta: 0.5, label_smoothing: 0.1 },
    { loss: 'exo_pair', beta: 0.5, label_smoothing: 1e-3 },
    { loss: 'sppo_hard', beta: 0.5 },
    { loss: 'nca_pair', beta: 0.5 },
    { loss: 'apo_zero', beta: 0.5 },
    { loss: 'apo_down', beta: 0.5 },
    { loss: 'bco_pair', beta: 0.5 },
    { loss: 'sigmoid_norm', beta: 0.5 },
    { loss: 'discopop', beta: 0.5 },
    { loss: 'discopop', beta: 0.5, discopop_tau: 0.3 },
    { loss: 'sft', beta: 0.5 },
    // MPO's mixture, TRL's documented example
    { loss: ['sigmoid', 'bco_pair', 'sft'], beta: 0.5, loss_weights: [0.8, 0.2, 1.0] },
    { loss: 'sigmoid', beta: 0.5, f_divergence_type: 'forward_kl' },
    { loss: 'ipo', beta: 0.5, f_divergence_type: 'js_divergence' },
    {
      loss: 'robust',
      beta: 0.5,
      label_smoothing: 0.1,
      f_divergence_type: 'alpha_divergence',
      f_alpha_divergence_coef: 0.3,
      dtype: 'float32', // TRL 1.13's alpha_divergence has no float64 path
    },
    { loss: 'sigmoid', beta: 0.5, ld_alpha: 0.4 },
    { loss: 'apo_zero', beta: 0.5, ld_alpha: 0 },
    // WPO: each pair's loss times its responses' length-normalised probabilities
    { loss: 'sigmoid', beta: 0.5, use_weighting: true },
    { loss: 'ipo', beta: 0.5, use_weighting: true, ld_alpha: 0.4 },
    { loss: ['sigmoid', 'bco_pair'], beta: 0.5, loss_weights: [0.8, 0.2], use_weighting: true },
    // AOT: the batch's margins (or log-ratios) sorted, pair by pair
    { loss: 'aot', beta: 0.5 },
    { loss: 'aot', beta: 0.5, label_smoothing: 0.2, ld_alpha: 0.4 },
    { loss: 'aot_unpaired', beta: 0.5, label_smoothing: 0.1 },
    { loss: ['sigmoid', 'aot'], beta: 0.5, loss_weights: [0.5, 1.0] },
  ] as DpoCase[]
).map((c) => ({
  ours: dpoSettings(c),
  trl: { trainer: 'dpo', ...c },
  // DiscoPOP's mix sigmoid(beta h / tau) multiplies float32's error in h by 1 / tau in the
  // gradient (measured: 2.3e-5 of the largest at tau 0.05, 7.5e-7 at 0.3)
  ...(c.loss === 'discopop' ? { tolerance: 2.5e-6 / (c.discopop_tau ?? 0.05) } : {}),
}));

/** A DPO case by TRL's DPOConfig names. */
type DpoCase = {
  loss: DpoLossType | DpoLossType[];
  beta: number;
  label_smoothing?: number;
  loss_weights?: number[];
  f_divergence_type?: FDivergence;
  f_alpha_divergence_coef?: number;
  discopop_tau?: number;
  ld_alpha?: number;
  use_weighting?: boolean;
  /** The reference's dtype where not float64. */
  dtype?: 'float32';
};

/** The project's settings for a DPO case. */
function dpoSettings(c: DpoCase): PreferenceSettings {
  return {
    kind: 'dpo',
    beta: c.beta,
    loss: c.loss,
    labelSmoothing: c.label_smoothing,
    lossWeights: c.loss_weights,
    fDivergence: c.f_divergence_type,
    fAlpha: c.f_alpha_divergence_coef,
    discopopTau: c.discopop_tau,
    ldAlpha: c.ld_alpha,
    useWeighting: c.use_weighting,
  };
}

/** trl.experimental's CPOTrainer (CPO, SimPO, CPO-SimPO) and ORPOTrainer. */
const REFERENCE_FREE_CASES: Case[] = [
  { ours: { kind: 'orpo', beta: 0.3 }, trl: { trainer: 'orpo', beta: 0.3 } },
  {
    ours: { kind: 'simpo', beta: 2, gamma: 0.7 },
    trl: { trainer: 'cpo', loss: 'simpo', beta: 2, gamma: 0.7, alpha: 0 },
  },
  {
    ours: { kind: 'simpo', beta: 2, gamma: 0.7, alpha: 0.4 },
    trl: { trainer: 'cpo', loss: 'simpo', beta: 2, gamma: 0.7, alpha: 0.4 },
  },
  {
    ours: { kind: 'simpo', beta: 2, gamma: 0.7, labelSmoothing: 0.15 },
    trl: { trainer: 'cpo', loss: 'simpo', beta: 2, gamma: 0.7, alpha: 0, label_smoothing: 0.15 },
  },
  {
    ours: { kind: 'cpo', beta: 0.05, alpha: 0.8 },
    trl: { trainer: 'cpo', loss: 'sigmoid', beta: 0.05, alpha: 0.8 },
  },
  {
    ours: { kind: 'cpo', beta: 0.3, alpha: 0.8, labelSmoothing: 0.2 },
    trl: { trainer: 'cpo', loss: 'sigmoid', beta: 0.3, alpha: 0.8, label_smoothing: 0.2 },
  },
  // AlphaPO (TRL's loss_type "alphapo": SimPO with cpo_alpha 0 and alpha), and its shape on CPO's sums
  {
    ours: { kind: 'simpo', beta: 2, gamma: 0.7, alphaPo: 0.25 },
    trl: { trainer: 'cpo', loss: 'simpo', beta: 2, gamma: 0.7, alpha: 0, alphapo: 0.25 },
  },
  {
    ours: { kind: 'cpo', beta: 0.1, alpha: 1, alphaPo: -0.05 },
    trl: { trainer: 'cpo', loss: 'sigmoid', beta: 0.1, alpha: 1, alphapo: -0.05 },
  },
  {
    ours: { kind: 'cpo', beta: 0.5, alpha: 0.3, loss: 'ipo', alphaPo: 0.1 },
    trl: { trainer: 'cpo', loss: 'ipo', beta: 0.5, alpha: 0.3, alphapo: 0.1 },
  },
  {
    ours: { kind: 'cpo', beta: 0.2, alpha: 1, loss: 'hinge' },
    trl: { trainer: 'cpo', loss: 'hinge', beta: 0.2, alpha: 1 },
  },
  {
    ours: { kind: 'cpo', beta: 0.5, alpha: 0.3, loss: 'ipo' },
    trl: { trainer: 'cpo', loss: 'ipo', beta: 0.5, alpha: 0.3 },
  },
];

interface TrlCase {
  loss: number;
  grads: ReferenceGrads;
  /** TRL's logs of the batch: rewards/chosen, rewards/accuracies, logps/chosen, ... (means over pairs). */
  logs: Record<string, number>;
}

/**
 * TRL's logs from the project's pair sums (pairStatSums), as the coordinator
 * divides them; DPO's num_tokens from the batch (inputTokenCounts, as a run counts it).
 */
function logsOf(stats: Float32Array, batch: TokenBatch): Record<string, number> {
  const [s, pairs] = [pairStatSums(stats), batch.batchSize];
  const numTokens = inputTokenCounts(pairSequences(batch)).reduce((a, b) => a + b, 0);
  return {
    'rewards/chosen': s.chosenSum / pairs,
    'rewards/rejected': s.rejectedSum / pairs,
    'rewards/accuracies': s.correct / pairs,
    'rewards/margins': (s.chosenSum - s.rejectedSum) / pairs,
    'logps/chosen': s.chosenLogpSum / pairs,
    'logps/rejected': s.rejectedLogpSum / pairs,
    // DPO's token metrics, over the responses' tokens (none counted for the others)
    ...(s.chosenTokens + s.rejectedTokens > 0
      ? {
          mean_token_accuracy: s.chosenCorrectTokens / s.chosenTokens,
          entropy: s.entropySum / (s.chosenTokens + s.rejectedTokens),
          'logits/chosen': s.chosenLogitSum / s.chosenTokens,
          'logits/rejected': s.rejectedLogitSum / s.rejectedTokens,
          num_tokens: numTokens,
        }
      : {}),
    // ORPO's, SimPO's and CPO's NLL term (where their alpha weighs it in), ORPO's log odds
    ...(s.nllPairs > 0 ? { nll_loss: s.nllSum / s.nllPairs } : {}),
    ...(s.oddsPairs > 0
      ? {
          log_odds_ratio: s.logOddsRatioSum / s.oddsPairs,
          log_odds_chosen: s.logOddsChosenSum / s.oddsPairs,
        }
      : {}),
  };
}

/** TRL's input: each pair's prompt, chosen and rejected ids, from [chosen | rejected] rows. */
function trlPairs(batch: TokenBatch) {
  const part = (row: number) => {
    const ids = Array.from(batch.ids.subarray(row * T, (row + 1) * T));
    const labels = Array.from(batch.labels.subarray(row * T, (row + 1) * T));
    const first = labels.findIndex((l) => l !== IGNORE_INDEX);
    const end = labels.findLastIndex((l) => l !== IGNORE_INDEX) + 1;
    return { prompt: ids.slice(0, first), response: ids.slice(first, end) };
  };
  return Array.from({ length: batch.batchSize }, (_, b) => {
    const [chosen, rejected] = [part(2 * b), part(2 * b + 1)];
    expect(rejected.prompt).toEqual(chosen.prompt);
    return {
      prompt_ids: chosen.prompt,
      chosen_ids: chosen.response,
      rejected_ids: rejected.response,
    };
  });
}

let root = '';

beforeAll(async () => {
  await useBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-preference-trl-'));
});

afterAll(() => rm(root, { recursive: true, force: true }));

/**
 * The pairs of `batch` with every chosen response cut to the shortest one's
 * length: TRL's CPO and ORPO take the chosen NLL's mean over the batch's
 * tokens, the project's per pair, which agree when the lengths do.
 */
function sameChosenLength(batch: TokenBatch): TokenBatch {
  const ids = Int32Array.from(batch.ids);
  const labels = Int32Array.from(batch.labels);
  const labelled = (b: number) => {
    const row = labels.subarray(2 * b * T, (2 * b + 1) * T);
    return [
      row.findIndex((l) => l !== IGNORE_INDEX),
      row.findLastIndex((l) => l !== IGNORE_INDEX) + 1,
    ];
  };
  const spans = Array.from({ length: batch.batchSize }, (_, b) => labelled(b));
  const shortest = Math.min(...spans.map(([first, end]) => end! - first!));
  spans.forEach(([first], b) => {
    for (let t = first! + shortest; t < T; t++) {
      ids[2 * b * T + t] = 0;
      labels[2 * b * T + t] = IGNORE_INDEX;
    }
  });
  return { ...batch, ids, labels };
}

/** TRL's loss, gradient and logs for each case on `batch`, against the project's. */
async function expectTrl(f: AdapterFixture, cases: Case[], batch: TokenBatch, name: string) {
  const casesPath = join(root, `${name}.json`);
  const settings = cases.map((c) => c.trl);
  await writeFile(casesPath, JSON.stringify({ pairs: trlPairs(batch), settings }));
  const { stdout } = await run(referencePython(), [REFERENCE, f.base, f.adapter, casesPath], {
    maxBuffer: 64 << 20,
  });
  const trl = (JSON.parse(stdout) as { cases: TrlCase[] }).cases;
  for (const [i, c] of cases.entries()) {
    const label = JSON.stringify(c.trl);
    f.trained.params.write(f.theta);
    const loss = objectiveOf(c.ours).loss(f.model, batch, {});
    // The project sums over pairs; TRL takes the mean: both gradients scaled to TRL's.
    const { loss: sum, grads } = f.trained.params.lossAndGrads(() => loss.sum());
    const logs = logsOf((await loss.stats()!.data()) as Float32Array, batch);
    loss.dispose();
    const want = trl[i]!;
    expect(Object.keys(logs).sort()).toEqual(Object.keys(want.logs).sort());
    for (const [key, value] of Object.entries(want.logs))
      expect(Math.abs(logs[key]! - value), `${label}: ${key}`).toBeLessThan(
        1e-5 * Math.max(1, Math.abs(value)),
      );
    expect(Math.abs(sum / batch.batchSize - want.loss), label).toBeLessThan(
      1e-5 * Math.max(1, Math.abs(want.loss)),
    );
    const scaled = grads.map((g) => g / batch.batchSize);
    await expectGradsLike(f, scaled, join(root, `grads-${name}-${i}`), want.grads, label, {
      tolerance: c.tolerance,
    });
  }
  f.trained.params.write(f.theta);
  return trl;
}

describe('the preference objectives against TRL itself (its trainers, transformers, peft)', () => {
  it("trl.DPOTrainer: every loss type's loss, LoRA gradient and logs", async () => {
    const f = await adapterFixture(root);
    // sft takes the chosen NLL's mean over the batch's tokens in TRL, per pair here (sameChosenLength)
    const sft = (c: Case) => [(c.trl as DpoCase).loss].flat().includes('sft');
    // One pair's chosen response partly the model's own predictions: a token accuracy above 0.
    const batch = withPredictedTokens(f.model, pairBatch(3, 51), 1);
    const trl = await expectTrl(
      f,
      DPO_CASES.filter((c) => !sft(c)),
      batch,
      'dpo',
    );
    expect(trl[0]!.logs.mean_token_accuracy).toBeGreaterThan(0);
    expect(trl[0]!.logs.mean_token_accuracy).toBeLessThan(1);
    await expectTrl(f, DPO_CASES.filter(sft), sameChosenLength(pairBatch(3, 51)), 'dpo-sft');
    f.model.dispose();
  }, 120_000);

  it('trl.DPOTrainer from a trained adapter (its frozen "ref" copy the reference): loss, LoRA gradient and logs', async () => {
    const f = await adapterFixture(root); // the adapter DPO starts from: f.adapter, f.theta
    const ref = await addPeftLora(f.model, REFERENCE_ADAPTER, LORA, { kind: 'kaiming' }, 5);
    ref.params.write(f.theta);
    for (const layer of ref.linears) layer.setActive('default');
    // Training moved the adapter away from where it started.
    const randn = normals(7);
    const moved = {
      ...f,
      theta: f.theta.map((v) => v + 0.2 * randn()),
      adapter: join(root, 'moved'),
    };
    moved.trained.params.write(moved.theta);
    await moved.save(moved.adapter);
    const cases: Case[] = (['sigmoid', 'ipo'] as const).map((loss) => ({
      ours: { kind: 'dpo', beta: 0.5, loss },
      trl: { trainer: 'dpo', loss, beta: 0.5, start: f.adapter },
    }));
    await expectTrl(moved, cases, pairBatch(3, 51), 'dpo-start');
    f.model.dispose();
  }, 120_000);

  it("trl.experimental's ORPOTrainer and CPOTrainer (CPO, SimPO, CPO-SimPO): loss, LoRA gradient and logs", async () => {
    const f = await adapterFixture(root);
    await expectTrl(f, REFERENCE_FREE_CASES, sameChosenLength(pairBatch(3, 51)), 'reference-free');
    f.model.dispose();
  }, 120_000);
});
