// The whole CLI path for a Llama-family model, with real processes: init from
// a config, train with 1 and 2 workers (the same adapter), eval, merge (also
// for a Gemma, a Gemma 2, a Gemma 3 (text, and multimodal: its text model), a Granite, a SmolLM3, a Phi-3 with its
// default targets, an OLMo 2, an OLMo 3, an EXAONE 4 and a GLM-4), QLoRA (--base-dtype nf4: 1 worker
// == 2 over the 4-bit base; a bitsandbytes 4-bit folder as stored), generate,
// a full fine-tune, extract
// and inspect. The folder has no
// tokenizer: pre-tokenized {"input_ids"} data needs none, text is refused
// with a clear error.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter } from '@lorafleet/core';
import { modelConfigFromJson, randomModelWeights } from '@lorafleet/models';
import { writeBnb4bitFolder } from '@lorafleet/models/testing';
import {
  evalJson,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  readJson,
  removeDir,
  writeJsonl,
  WORKERS_TOLERANCE,
} from './helpers.js';
import { CONFIGS, TINY_LLAMA } from './llama-configs.js';

/** --target for each config (none: the model type's default targets), and how many modules per layer that adapts. */
const TARGETS = { args: ['--target', 'q_proj,v_proj,down_proj'], perLayer: 3 };
const DEFAULT_TARGETS = { args: [], perLayer: 4 };
const ROWS = ['--steps', '12', '--batch-size', '6', '--seq-len', '32'];
const TRAIN = [...ROWS, '--lora-dropout', '0'];

let dir: string | undefined;
type Family = keyof typeof CONFIGS;
/** Each config's model folder, made by `lorafleet init`. */
const models = {} as Record<Family, string>;
let llama: string;
let ids: string;
let text: string;

/** Rows of token ids with a pattern a tiny model picks up quickly. */
function idRecords(rows: number): { input_ids: number[] }[] {
  return Array.from({ length: rows }, (_, i) => ({
    input_ids: Array.from({ length: 40 }, (_, t) => ((i * 7 + t * t) % 50) + 10),
  }));
}

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('llama');
  for (const [family, config] of Object.entries(CONFIGS) as [Family, object][]) {
    const configPath = await writeJsonl(join(dir, `${family}.config.json`), [config]);
    models[family] = join(dir, family);
    const init = await lorafleetOk([
      ...['init', '--config', configPath, '--out', models[family], '--tokenizer', 'none'],
    ]);
    if (family === 'llama')
      expect(init.stdout).toMatch(
        /Llama layout \(model_type llama\), 2 layers, 32 wide, context 64/,
      );
  }
  llama = models.llama;
  ids = await writeJsonl(join(dir, 'ids.jsonl'), idRecords(60));
  text = await writeJsonl(join(dir, 'text.jsonl'), numberedPatternRecords(20));
}, 300_000);

afterAll(() => removeDir(dir));

async function adapterValues(out: string): Promise<Map<string, Float32Array>> {
  const adapter = await loadPeftAdapter(join(out, 'adapter'));
  const flat = new Map<string, Float32Array>();
  for (const [path, m] of adapter.modules) flat.set(`${path}.A`, m.a).set(`${path}.B`, m.b);
  return flat;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe('a Llama-family model through the CLI', () => {
  it.each(Object.keys(CONFIGS) as Family[])(
    '%s: trains the same adapter with 1 and 2 workers; eval and merge agree',
    async (family) => {
      const model = models[family];
      const [one, two] = [join(dir!, `${family}-w1`), join(dir!, `${family}-w2`)];
      const targets = family === 'phi3' ? DEFAULT_TARGETS : TARGETS;
      const train = (out: string, workers: string) =>
        lorafleetOk([
          ...['train', '--model', model, '--data', ids, '--out', out],
          ...[...TRAIN, ...targets.args, '--lr', '1e-2', '--workers', workers],
        ]);
      await train(one, '1');
      await train(two, '2');
      const [a, b] = [await adapterValues(one), await adapterValues(two)];
      // The decoder's module path: Gemma3ForConditionalGeneration's inside its wrapper.
      const decoder = family === 'gemma3_multimodal' ? 'model.language_model' : 'model';
      expect([...a.keys()]).toContain(`${decoder}.layers.1.mlp.down_proj.B`);
      expect(a.size).toBe(2 * targets.perLayer * 2); // A and B of each module in 2 layers
      for (const [key, values] of a)
        expect(maxAbsDiff(values, b.get(key)!), key).toBeLessThan(WORKERS_TOLERANCE);

      const data = ['--data', ids, '--seq-len', '32'];
      const base = await evalJson(['--model', model, ...data]);
      const adapted = await evalJson([
        '--model',
        model,
        '--adapter',
        join(one, 'adapter'),
        ...data,
      ]);
      expect(adapted.adaptedModules).toBe(targets.perLayer * 2);
      expect(adapted.loss).toBeLessThan(base.loss - 0.02); // it learned
      const merged = join(dir!, `${family}-merged`);
      await lorafleetOk([
        'merge',
        '--model',
        model,
        '--adapter',
        join(one, 'adapter'),
        '--out',
        merged,
      ]);
      const after = await evalJson(['--model', merged, ...data]);
      expect(Math.abs(after.loss - adapted.loss)).toBeLessThan(1e-5);
    },
  );

  it("phi3: a --seq-len past LongRoPE's original context trains (the long factors) and evaluates", async () => {
    const out = join(dir!, 'phi3-long');
    await lorafleetOk([
      ...['train', '--model', models.phi3, '--data', ids, '--out', out],
      ...['--steps', '2', '--seq-len', '40', '--lr', '1e-2'],
    ]);
    const summary = await readJson<{ steps: number }>(join(out, 'summary.json'));
    expect(summary.steps).toBe(2);
    const evaluated = await evalJson([
      ...['--model', models.phi3, '--data', ids, '--seq-len', '40'],
      ...['--adapter', join(out, 'adapter')],
    ]);
    expect(Number.isFinite(evaluated.loss)).toBe(true);
  });

  it('QLoRA (--base-dtype nf4): 1 and 2 workers train the same adapter, which learns over the 4-bit base', async () => {
    const [one, two] = [join(dir!, 'nf4-w1'), join(dir!, 'nf4-w2')];
    const nf4 = ['--base-dtype', 'nf4'];
    const train = (out: string, workers: string) =>
      lorafleetOk([
        ...['train', '--model', llama, '--data', ids, '--out', out, ...nf4],
        ...[...TRAIN, '--target', 'all-linear', '--lr', '1e-2', '--workers', workers],
      ]);
    const first = await train(one, '1');
    expect(first.stdout).toContain('frozen linear weights stored as nf4');
    await train(two, '2');
    const [a, b] = [await adapterValues(one), await adapterValues(two)];
    expect(a.size).toBe(2 * 7 * 2); // A and B of the 7 linear layers of 2 layers
    for (const [key, values] of a)
      expect(maxAbsDiff(values, b.get(key)!), key).toBeLessThan(WORKERS_TOLERANCE);
    const data = ['--model', llama, '--data', ids, '--seq-len', '32'];
    const adapter = ['--adapter', join(one, 'adapter')];
    const [base, base4, adapted4] = await Promise.all([
      evalJson(data),
      evalJson([...data, ...nf4]),
      evalJson([...data, ...nf4, ...adapter]),
    ]);
    // 16 levels per block of 64 move the random model's loss, a little.
    expect(base4.loss).not.toBe(base.loss);
    expect(Math.abs(base4.loss - base.loss)).toBeLessThan(0.05);
    expect(adapted4.loss).toBeLessThan(base4.loss - 0.02); // it learned
  });

  it('a bitsandbytes 4-bit folder trains as QLoRA as stored; eval takes it; merge writes an unquantized model', async () => {
    const folder = join(dir!, 'llama-bnb-4bit');
    const config = modelConfigFromJson(TINY_LLAMA, 'TINY_LLAMA');
    await writeBnb4bitFolder(folder, TINY_LLAMA, randomModelWeights(config, 4), {
      doubleQuant: true,
    });
    const out = join(dir!, 'bnb-run');
    const run = await lorafleetOk([
      ...['train', '--model', folder, '--data', ids, '--out', out],
      ...[...TRAIN, '--target', 'all-linear', '--lr', '1e-2'],
    ]);
    expect(run.stdout).toContain(
      "frozen linear weights stored as nf4, the folder's bitsandbytes 4-bit bytes as they are",
    );
    const data = ['--model', folder, '--data', ids, '--seq-len', '32'];
    const adapter = ['--adapter', join(out, 'adapter')];
    const [base, adapted, dequantized] = await Promise.all([
      evalJson(data),
      evalJson([...data, ...adapter]),
      evalJson([...data, ...adapter, '--base-dtype', 'f32']),
    ]);
    expect(adapted.loss).toBeLessThan(base.loss - 0.02); // it learned
    // f32 holds the same dequantized W: the same loss, up to summation order.
    expect(Math.abs(dequantized.loss - adapted.loss)).toBeLessThan(1e-5);
    const merged = join(dir!, 'bnb-merged');
    await lorafleetOk(['merge', '--model', folder, ...adapter, '--out', merged]);
    const written = await readJson<Record<string, unknown>>(join(merged, 'config.json'));
    expect(written.quantization_config).toBeUndefined();
    const after = await evalJson(['--model', merged, '--data', ids, '--seq-len', '32']);
    expect(Math.abs(after.loss - dequantized.loss)).toBeLessThan(1e-5);
  });

  it('a full fine-tune, extracted into a LoRA adapter, inspected', async () => {
    const full = join(dir!, 'full');
    await lorafleetOk([
      'train',
      '--model',
      llama,
      '--data',
      ids,
      '--out',
      full,
      '--full-finetune',
      ...ROWS,
      '--lr',
      '1e-3',
    ]);
    const out = join(dir!, 'extracted');
    const extracted = await lorafleetOk([
      ...['extract', '--base', llama, '--tuned', join(full, 'model'), '--rank', '4'],
      ...['--out', out, '--json'],
    ]);
    const report = JSON.parse(extracted.stdout) as {
      modules: { module: string; energyKept: number }[];
    };
    // The default target: every linear layer of the family (a full fine-tune changed them all).
    expect(report.modules).toHaveLength(7 * 2);
    expect(report.modules.map((m) => m.module)).toContain('model.layers.0.self_attn.o_proj');
    expect(report.modules.every((m) => m.energyKept > 0 && m.energyKept <= 1 + 1e-9)).toBe(true);
    const adapter = await loadPeftAdapter(out);
    expect(adapter.config.fanInFanOut).toBe(false);
    expect(adapter.config.targetModules).toContain('gate_proj');
    const inspected = await lorafleetOk(['inspect', '--adapter', out]);
    expect(inspected.stdout).toMatch(/model\.layers\.1\.self_attn\.q_proj\s+\[32, 32\]\s+4/);
  });

  it('--target all-linear adapts every linear layer and records their PEFT names', async () => {
    const out = join(dir!, 'all-linear');
    const run = ['--model', llama, '--data', ids, '--out', out, '--steps', '1', '--seq-len', '32'];
    await lorafleetOk(['train', ...run, '--target', 'all-linear', '--workers', '1']);
    const adapter = await loadPeftAdapter(join(out, 'adapter'));
    expect(adapter.modules.size).toBe(7 * 2);
    expect(adapter.config.targetModules).toEqual([
      'down_proj',
      'gate_proj',
      'k_proj',
      'o_proj',
      'q_proj',
      'up_proj',
      'v_proj',
    ]);
  });

  it('generates from a folder with a tokenizer; text without one is refused with the fix', async () => {
    const bytes = await initTinyModel(dir!, 'bytes', 1, TINY_LLAMA);
    const greedy = ['--max-new-tokens', '6', '--temperature', '0'];
    const first = await lorafleetOk(['generate', '--model', bytes, '--prompt', 'abc', ...greedy]);
    const again = await lorafleetOk(['generate', '--model', bytes, '--prompt', 'abc', ...greedy]);
    expect(first.stdout.startsWith('abc')).toBe(true);
    expect(again.stdout).toBe(first.stdout);
    for (const args of [
      ['eval', '--model', llama, '--data', text, '--seq-len', '32'],
      ['generate', '--model', llama, '--prompt', 'abc'],
    ]) {
      const refused = await lorafleet(args);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(
        /text must be tokenized here .* no usable tokenizer: cannot choose a tokenizer/,
      );
      expect(refused.stderr).toMatch(/pre-tokenized \{"input_ids": \[\.\.\.\]\} rows/);
    }
  });
});
