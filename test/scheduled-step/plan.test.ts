// The hand-scheduled LoRA step as a plan (SwiftShader here): replays after
// the parameters change and frees what it allocated, shares memory between
// intermediates, times each dispatch, trains and evaluates as the tape does
// through TrainingStep and evaluateLossSums, and names why it cannot run.
import { describe, expect, it } from 'vitest';
import { readParametersAsync, selectWebGpuMatMul, tf } from '@lorafleet/core';
import { webGpuSuite } from '../../packages/core/test/webgpu-suite.js';
import {
  ScheduledGradients,
  ScheduledLoss,
  evaluateLossSums,
  scheduledEvaluation,
  chooseStepGradients,
  scheduledStepBytes,
  scheduledStepUnsupported,
} from '../../packages/models/src/index.js';
import { TrainingStep } from '../../packages/worker/src/index.js';
import {
  CONFIG,
  batch,
  llamaBatch,
  loraLlama,
  loraModel,
  maxRelDiff,
  expectTokenStats,
  scheduledSums,
  tapeSums,
} from './fixtures.js';

webGpuSuite();

describe('the hand-scheduled LoRA step as a plan', () => {
  it('replays with the parameters as they are now, and frees what it allocated', async () => {
    const { model, params } = await loraModel(CONFIG, ['c_attn', 'c_fc']);
    const before = tf.memory().numTensors;
    const s = new ScheduledGradients(model, params);
    try {
      const b = [batch(2, 9)];
      await scheduledSums(s, b);
      const now = await readParametersAsync(params);
      params.write(Float32Array.from(now, (v, i) => v + 0.05 * Math.cos(i)));
      const want = await tapeSums(model, params, b);
      const got = await scheduledSums(s, b);
      expect(maxRelDiff(want.grads, got.grads)).toBeLessThan(1e-5);
      // A second shape gets its own plan; the sums are still one read.
      const mixed = [batch(2, 9), batch(1, 6, 2)];
      const wantMixed = await tapeSums(model, params, mixed);
      const gotMixed = await scheduledSums(s, mixed);
      expect(maxRelDiff(wantMixed.grads, gotMixed.grads)).toBeLessThan(1e-5);
      // A third shape drops the least recently used plan (two are kept).
      const three = [batch(1, 6, 3), batch(3, 4), batch(2, 9, 1)];
      const wantThree = await tapeSums(model, params, three);
      const gotThree = await scheduledSums(s, three);
      expect(maxRelDiff(wantThree.grads, gotThree.grads)).toBeLessThan(1e-5);
      s.dispose();
      // The parameter writes replaced the adapters' tensors one for one.
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  it('reuses memory: its buffers hold fewer bytes than its intermediates, as measured without a plan', async () => {
    const { model, params } = await loraModel({ ...CONFIG, nLayer: 4 }, ['c_attn']);
    const s = new ScheduledGradients(model, params);
    try {
      s.add(batch(2, 16));
      await s.take();
      const measured = scheduledStepBytes(model, params, 2, 16);
      expect(s.planBytes).toBe(measured.shared);
      expect(measured.shared).toBeLessThan(0.7 * measured.unshared);
      expect(measured.dispatches).toBe(s.dispatches);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  it('times each dispatch on the GPU, leaving the sums empty', async () => {
    const { model, params } = await loraModel(CONFIG, ['c_attn']);
    const s = new ScheduledGradients(model, params);
    try {
      const b = batch(2, 7);
      const want = await scheduledSums(s, [b]);
      s.add(b);
      const rows = await s.profile(batch(2, 7, 4));
      expect(rows).toHaveLength(s.dispatches);
      for (const r of rows) expect(r.ns).toBeGreaterThanOrEqual(0);
      expect(rows.some((r) => r.label.startsWith('LoraFleetMatMul ['))).toBe(true);
      expect(rows.some((r) => r.label.startsWith('heads ['))).toBe(true);
      expect(await scheduledSums(s, [b])).toEqual(want);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  // With dropout: TrainingStep gives each micro-batch's seed to either path.
  it('trains as the tape does: three TrainingSteps on each path, model and LoRA dropout 0.1', async () => {
    const dropping = { ...CONFIG, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const run = async (path: 'tape' | 'scheduled') => {
      process.env.LORAFLEET_WEBGPU_STEP = path;
      const { model, params } = await loraModel(dropping, ['c_attn', 'c_proj'], 0.1);
      const step = new TrainingStep(model, params, {
        optimizer: {
          kind: 'adamw',
          lr: 2e-2,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0.01,
        },
        schedule: { kind: 'constant' },
        maxGradNorm: 1,
        seed: 3,
      });
      try {
        expect(step.gradients.path).toBe(path);
        const losses: number[] = [];
        for (let i = 0; i < 3; i++)
          losses.push((await step.run([batch(2, 8, i), batch(2, 8, i + 5)])).loss);
        return { losses, values: step.snapshot().values };
      } finally {
        delete process.env.LORAFLEET_WEBGPU_STEP;
        step.dispose();
        model.dispose();
      }
    };
    const tape = await run('tape');
    const scheduled = await run('scheduled');
    for (const [i, loss] of tape.losses.entries()) expect(scheduled.losses[i]).toBeCloseTo(loss, 5);
    expect(maxRelDiff(tape.values, scheduled.values)).toBeLessThan(1e-5);
    expect(tape.losses[2]).toBeLessThan(tape.losses[0]!);
  });

  it('evaluates as the tape does, also a model that trains with dropout', async () => {
    const gpt2 = await loraModel({ ...CONFIG, attnPdrop: 0.1, residPdrop: 0.1 }, ['c_attn'], 0.1);
    const llama = await loraLlama({}, ['q_proj', 'down_proj']);
    try {
      for (const { model, params } of [gpt2, llama]) {
        const rows = [llamaBatch(2, 7), llamaBatch(1, 9, 2), llamaBatch(2, 7, 3)];
        expect(scheduledEvaluation(model)).toBeInstanceOf(ScheduledLoss);
        const tapeEval = async (batches = rows) => {
          process.env.LORAFLEET_WEBGPU_STEP = 'tape';
          try {
            expect(scheduledEvaluation(model)).toBeNull();
            return await evaluateLossSums(model, batches);
          } finally {
            delete process.env.LORAFLEET_WEBGPU_STEP;
          }
        };
        // A batch packing documents apart takes the tape within the scheduled evaluation.
        const packed = {
          ...llamaBatch(2, 8, 4),
          positionIds: Int32Array.from([0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 0]),
        };
        const scheduled = await evaluateLossSums(model, [...rows, packed]);
        const tape = await tapeEval([...rows, packed]);
        expect(scheduled.tokens).toBe(tape.tokens);
        expect(Math.abs(scheduled.lossSum - tape.lossSum) / tape.lossSum).toBeLessThan(1e-6);
        expectTokenStats(
          [scheduled.stats.correct, scheduled.stats.entropy],
          [tape.stats.correct, tape.stats.entropy],
        );
        // One ScheduledLoss (its plans) across an update of the adapters sees the new values.
        const l = new ScheduledLoss(model);
        try {
          const sum = async () => {
            for (const r of rows) l.add(r);
            return l.take();
          };
          const before = await sum();
          const now = await readParametersAsync(params);
          params.write(Float32Array.from(now, (v, i) => v + 0.1 * Math.sin(i)));
          const after = await sum();
          const want = (await tapeEval()).lossSum;
          expect(Math.abs(after.lossSum - want) / want).toBeLessThan(1e-6);
          expect(Math.abs(after.lossSum - before.lossSum) / want).toBeGreaterThan(1e-4);
        } finally {
          l.dispose();
        }
      }
    } finally {
      gpt2.model.dispose();
      llama.model.dispose();
    }
  });

  it('names why it cannot run, and auto falls back to the tape', async () => {
    const merged = await loraLlama({}, ['q_proj']);
    const loraDropout = await loraModel(CONFIG, ['c_attn'], 0.1);
    try {
      merged.model
        .linears()
        .find((l) => l.activeAdapter)!
        .merge();
      expect(scheduledStepUnsupported(merged.model, merged.params)).toMatch(/an adapter is merged/);
      expect(scheduledStepUnsupported(loraDropout.model, loraDropout.params)).toBeNull();
      // What the tape does and the scheduled step does not: named, and auto takes the tape.
      const tapeOnly = {
        gradientCheckpointing: /gradient checkpointing/,
      };
      for (const [option, why] of Object.entries(tapeOnly)) {
        const model = loraDropout.model;
        const choice = chooseStepGradients(model, loraDropout.params, 'auto', { [option]: true });
        expect(choice).toEqual({ path: 'tape', reason: expect.stringMatching(why) });
      }
      // Packed documents take it (packed.test.ts: where they do not).
      const packedDocuments = { packedDocuments: true };
      expect(
        chooseStepGradients(loraDropout.model, loraDropout.params, 'auto', packedDocuments),
      ).toEqual({ path: 'scheduled', reason: null });
      const dpo = { objective: 'dpo' } as const;
      expect(chooseStepGradients(loraDropout.model, loraDropout.params, 'auto', dpo)).toEqual({
        path: 'tape',
        reason: expect.stringMatching(/--objective dpo is the tape's/),
      });
      expect(chooseStepGradients(merged.model, merged.params, 'auto')).toEqual({
        path: 'tape',
        reason: expect.stringMatching(/merged/),
      });
      expect(() => chooseStepGradients(merged.model, merged.params, 'scheduled')).toThrow(
        /LORAFLEET_WEBGPU_STEP=scheduled, but .* an adapter is merged/,
      );
      selectWebGpuMatMul('stock');
      try {
        expect(scheduledStepUnsupported(loraDropout.model, loraDropout.params)).toMatch(/stock/);
      } finally {
        selectWebGpuMatMul('project');
      }
    } finally {
      merged.model.dispose();
      loraDropout.model.dispose();
    }
  });
});
