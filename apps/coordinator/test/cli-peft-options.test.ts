// PEFT's LoRA options through the real CLI and real processes: `lorafleet
// train` with 1 and 2 workers on a tiny Qwen2 (q/k/v biases, untied head)
// with LoRA on the embedding, rank/alpha patterns, modules_to_save and bias
// "all" gives the same adapter, written with PEFT's key names and config
// fields; merge (at 1e-4), eval and the regex/layer options; PiSSA and OLoRA
// (saved for the original base, which then gives the run's loss); DoRA (1 worker
// == 2, its magnitudes in the file, merge and resume); weight decay's
// exemptions and NEFTune through the CLI; the family's
// default targets; contradictions exit 2 naming both options; LoRA on a
// tied embedding.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter, readSafetensorsFile } from '@lorafleet/core';
import {
  ensureBuilt,
  evalJson,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  readJson,
  removeDir,
  writeJsonl,
  WORKERS_TOLERANCE,
  heldOutLoss,
} from './helpers.js';

const TINY_QWEN2 = {
  model_type: 'qwen2',
  vocab_size: 120,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};
const ROWS = ['--steps', '6', '--batch-size', '6', '--seq-len', '32', '--lora-dropout', '0'];
const OPTIONS = [
  ...['--target', 'embed_tokens,q_proj,down_proj'],
  ...['--rank-pattern', 'down_proj=2', '--alpha-pattern', 'q_proj=32'],
  ...['--modules-to-save', 'lm_head', '--lora-bias', 'all', '--lr', '1e-2'],
];

let dir: string | undefined;
let model: string;
let ids: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('peft-options');
  const configPath = join(dir, 'qwen2.config.json');
  await writeJsonl(configPath, [TINY_QWEN2]);
  model = join(dir, 'model');
  await lorafleetOk(['init', '--config', configPath, '--out', model, '--tokenizer', 'none']);
  const rows = Array.from({ length: 40 }, (_, i) => ({
    input_ids: Array.from({ length: 40 }, (_, t) => ((i * 7 + t * t) % 50) + 10),
  }));
  ids = await writeJsonl(join(dir, 'ids.jsonl'), rows);
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...args: string[]) =>
  lorafleetOk(['train', '--model', model, '--data', ids, '--out', out, ...ROWS, ...args]);

/** Every tensor of an adapter file by key, as f32 values. */
async function tensors(adapter: string): Promise<Map<string, Float32Array>> {
  const loaded = await loadPeftAdapter(adapter);
  const out = new Map<string, Float32Array>();
  for (const [p, m] of loaded.modules) out.set(`${p}.A`, m.a).set(`${p}.B`, m.b);
  for (const [p, m] of loaded.embeddings ?? []) out.set(`${p}.eA`, m.a).set(`${p}.eB`, m.b);
  for (const [k, t] of loaded.tensors ?? []) out.set(k, t.data);
  return out;
}

async function keysOf(adapter: string): Promise<string[]> {
  const file = await readSafetensorsFile(join(adapter, 'adapter_model.safetensors'));
  return [...file.tensors.keys()].sort();
}

/** A run with `options` stopped at step 4 and resumed ends with the uninterrupted run's adapter bytes. */
async function expectResumesBitwise(label: string, options: string[]): Promise<void> {
  const args = [...options, '--schedule', 'constant', '--checkpoint-every', '2'];
  const [whole, cut] = [join(dir!, `${label}-whole`), join(dir!, `${label}-cut`)];
  await train(whole, ...args);
  await train(cut, ...args, '--steps', '4');
  await train(cut, ...args, '--resume', cut);
  const file = (d: string) => readFile(join(d, 'adapter', 'adapter_model.safetensors'));
  expect((await file(cut)).equals(await file(whole))).toBe(true);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Two runs' adapters (1 worker's and 2's) hold the same tensors, every value within WORKERS_TOLERANCE. */
async function expectSameAdapter(one: string, two: string): Promise<void> {
  const [a, b] = await Promise.all([one, two].map((run) => tensors(join(run, 'adapter'))));
  expect([...a!.keys()].sort()).toEqual([...b!.keys()].sort());
  for (const [key, values] of a!)
    expect(maxAbsDiff(values, b!.get(key)!), key).toBeLessThan(WORKERS_TOLERANCE);
}

describe('PEFT LoRA options through lorafleet train', () => {
  it('1 and 2 workers train the same adapter, in PEFT layout; merge and eval agree', async () => {
    const [one, two] = [join(dir!, 'w1'), join(dir!, 'w2')];
    const first = await train(one, ...OPTIONS, '--workers', '1');
    expect(first.stdout).toContain('on embed_tokens, q_proj, down_proj; lm_head in full; bias all');
    await train(two, ...OPTIONS, '--workers', '2');
    await expectSameAdapter(one, two);

    const P = 'base_model.model.';
    const keys = await keysOf(join(one, 'adapter'));
    expect(keys).toEqual(
      expect.arrayContaining([
        `${P}model.embed_tokens.lora_embedding_A`,
        `${P}model.embed_tokens.lora_embedding_B`,
        `${P}model.layers.1.self_attn.q_proj.lora_A.weight`,
        `${P}model.layers.1.self_attn.q_proj.base_layer.bias`,
        `${P}model.layers.1.self_attn.k_proj.bias`,
        `${P}model.layers.0.mlp.down_proj.lora_B.weight`,
        `${P}lm_head.weight`,
      ]),
    );
    const config = await readJson<Record<string, unknown>>(
      join(one, 'adapter', 'adapter_config.json'),
    );
    expect(config).toMatchObject({
      target_modules: ['embed_tokens', 'q_proj', 'down_proj'],
      rank_pattern: { down_proj: 2 },
      alpha_pattern: { q_proj: 32 },
      modules_to_save: ['lm_head'],
      bias: 'all',
    });
    const loaded = await loadPeftAdapter(join(one, 'adapter'));
    expect(loaded.modules.get('model.layers.0.mlp.down_proj')!.r).toBe(2);
    const inspect = await lorafleetOk(['inspect', '--adapter', join(one, 'adapter')]);
    expect(inspect.stdout).toMatch(/model\.embed_tokens +\[32, 120\] +8/);
    expect(inspect.stdout).toContain(
      'tensors trained in full (bias "all", modules_to_save ["lm_head"])',
    );

    const data = ['--data', ids, '--seq-len', '32'];
    const adapted = await evalJson(['--model', model, '--adapter', join(one, 'adapter'), ...data]);
    const base = await evalJson(['--model', model, ...data]);
    expect(adapted.adaptedModules).toBe(5); // embed_tokens + q_proj, down_proj x 2 layers
    expect(adapted.loss).toBeLessThan(base.loss - 0.02);
    const merged = join(dir!, 'merged');
    const m = await lorafleetOk([
      ...['merge', '--model', model, '--adapter', join(one, 'adapter')],
      ...['--out', merged, '--tolerance', '1e-4'],
    ]);
    expect(m.stdout).toContain('merged 5 adapted modules');
    const after = await evalJson(['--model', merged, ...data]);
    expect(Math.abs(after.loss - adapted.loss)).toBeLessThan(1e-5);
  });

  it.each(['pissa', 'pissa_niter_4', 'olora'])(
    "--init %s: W becomes the residual; the saved rank-2r adapter gives the original base the run's loss; 1 worker == 2",
    async (init) => {
      const args = ['--init', init, '--target', 'q_proj,down_proj', '--lr', '1e-2'];
      args.push('--lora-r', '4', '--lora-alpha', '8');
      const [one, two] = [join(dir!, `${init}1`), join(dir!, `${init}2`)];
      const run = await train(one, ...args, '--eval-data', ids);
      await train(two, ...args, '--eval-data', ids, '--workers', '2');
      await expectSameAdapter(one, two);
      // PEFT's conversion for the original weights: rank 2r, alpha doubled, a plain LoRA.
      const config = await readJson<Record<string, unknown>>(
        join(one, 'adapter', 'adapter_config.json'),
      );
      expect(config).toMatchObject({ r: 8, lora_alpha: 16, init_lora_weights: true });
      // At step 0 the adapter changes nothing (the residual plus B A is W): the base's loss.
      const data = ['--data', ids, '--seq-len', '32'];
      const base = await evalJson(['--model', model, ...data]);
      const before = heldOutLoss(run.stdout, 'before');
      expect(before).toBeCloseTo(base.loss, 3);
      // After training: the adapter on the original base model gives the run's held-out loss.
      const after = heldOutLoss(run.stdout, 'after');
      const adapted = await evalJson([
        '--model',
        model,
        '--adapter',
        join(one, 'adapter'),
        ...data,
      ]);
      expect(adapted.loss).toBeCloseTo(after, 3);
      expect(adapted.loss).toBeLessThan(base.loss - 5e-4); // trained (6 steps)
    },
  );

  it("--init orthogonal: the update starts at zero with A and B non-zero; PEFT's config name; 1 worker == 2", async () => {
    const args = ['--init', 'orthogonal', '--target', 'q_proj,down_proj', '--lora-r', '4'];
    const [one, two] = [join(dir!, 'orth1'), join(dir!, 'orth2')];
    const run = await train(one, ...args, '--lr', '1e-2', '--eval-data', ids);
    await train(two, ...args, '--lr', '1e-2', '--eval-data', ids, '--workers', '2');
    await expectSameAdapter(one, two);
    const config = await readJson<Record<string, unknown>>(
      join(one, 'adapter', 'adapter_config.json'),
    );
    expect(config).toMatchObject({ r: 4, init_lora_weights: 'orthogonal' });
    // B A = 0 at step 0: the base model's loss before training.
    const base = await evalJson(['--model', model, '--data', ids, '--seq-len', '32']);
    const before = heldOutLoss(run.stdout, 'before');
    expect(before).toBeCloseTo(base.loss, 3);
    const odd = await lorafleet([
      'train',
      '--model',
      model,
      '--data',
      ids,
      '--out',
      join(dir!, 'odd'),
      '--init',
      'orthogonal',
      '--lora-r',
      '3',
    ]);
    expect(odd.code).toBe(2);
    expect(odd.stderr).toContain('--init orthogonal needs even LoRA ranks');
  });

  it('DoRA (--use-dora): 1 and 2 workers agree, magnitudes saved, merge, eval and resume', async () => {
    const dora = ['--use-dora', '--target', 'q_proj,down_proj', '--lr', '5e-2'];
    const [one, two] = [join(dir!, 'dora1'), join(dir!, 'dora2')];
    const first = await train(one, ...dora, '--workers', '1');
    expect(first.stdout).toContain('on q_proj, down_proj; DoRA');
    await train(two, ...dora, '--workers', '2');
    const loaded = await loadPeftAdapter(join(one, 'adapter'));
    const other = await loadPeftAdapter(join(two, 'adapter'));
    expect(loaded.config.useDora).toBe(true);
    for (const [path, m] of loaded.modules) {
      const twin = other.modules.get(path)!;
      expect(m.magnitude, path).toBeDefined();
      for (const k of ['a', 'b', 'magnitude'] as const)
        expect(maxAbsDiff(m[k]!, twin[k]!), `${path}.${k}`).toBeLessThan(WORKERS_TOLERANCE);
    }
    const keys = await keysOf(join(one, 'adapter'));
    expect(keys).toContain('base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector');
    const config = await readJson<Record<string, unknown>>(
      join(one, 'adapter', 'adapter_config.json'),
    );
    expect(config.use_dora).toBe(true);
    const inspect = await lorafleetOk(['inspect', '--adapter', join(one, 'adapter')]);
    expect(inspect.stdout).toMatch(/LoRA r=8, alpha=16, DoRA .*4 modules, 2\.4k parameters/);

    const data = ['--data', ids, '--seq-len', '32'];
    const adapted = await evalJson(['--model', model, '--adapter', join(one, 'adapter'), ...data]);
    const base = await evalJson(['--model', model, ...data]);
    // Six steps on a random model move the loss a little (plain LoRA's likewise).
    expect(adapted.loss).toBeLessThan(base.loss - 0.002);
    const merged = join(dir!, 'dora-merged');
    await lorafleetOk([
      ...['merge', '--model', model, '--adapter', join(one, 'adapter')],
      ...['--out', merged, '--tolerance', '1e-4'],
    ]);
    const after = await evalJson(['--model', merged, ...data]);
    expect(Math.abs(after.loss - adapted.loss)).toBeLessThan(1e-5);

    // The magnitudes are in the checkpoint too.
    await expectResumesBitwise('dora', dora);
  });

  // One AdamW step from B = 0 moves each element by ~lr (m / sqrt(v) = sign(g)), and A not at
  // all (its gradient is 0 while B is): so LoRA+'s B and trained biases move 16x plain LoRA's.
  it('LoRA+ (--loraplus-lr-ratio 16): B and biases move 16x, 1 worker == 2, resume bitwise', async () => {
    const plus = ['--target', 'q_proj', '--lora-bias', 'lora_only', '--lr', '1e-3'];
    const one = (out: string, ...more: string[]) =>
      train(join(dir!, out), ...plus, '--steps', '1', '--max-grad-norm', '0', ...more);
    const fast = await one('plus1', '--loraplus-lr-ratio', '16');
    expect(fast.stdout).toContain('LoRA+: B learns at 16x --lr');
    await one('plain1');
    const [p, q] = [
      await tensors(join(dir!, 'plus1', 'adapter')),
      await tensors(join(dir!, 'plain1', 'adapter')),
    ];
    const base = (await readSafetensorsFile(join(model, 'model.safetensors'))).tensors;
    let [checked, biases] = [0, 0];
    for (const [key, got] of p) {
      const plain = q.get(key)!;
      const baseKey = key.replace('.base_layer', '');
      const entry = key.endsWith('.bias') ? base.get(baseKey) : undefined;
      const start = entry ? new Float32Array(entry.bytes.slice().buffer) : null; // F32 (init)
      if (start) biases++;
      if (key.endsWith('.A')) {
        expect(maxAbsDiff(got, plain), key).toBe(0);
        continue;
      }
      for (let i = 0; i < got.length; i++) {
        const [d, e] = [got[i]! - (start?.[i] ?? 0), plain[i]! - (start?.[i] ?? 0)];
        if (Math.abs(e) < 1e-5) continue;
        expect(Math.abs(d / e - 16), `${key}[${i}]`).toBeLessThan(0.02);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
    expect(biases).toBe(2); // q_proj's in each layer

    const options = [...plus, '--loraplus-lr-ratio', '16'];
    const [w1, w2] = [join(dir!, 'plus-w1'), join(dir!, 'plus-w2')];
    await train(w1, ...options, '--workers', '1');
    await train(w2, ...options, '--workers', '2');
    await expectSameAdapter(w1, w2);
    await expectResumesBitwise('loraplus', options);
  });

  it('--weight-decay leaves biases alone, as Trainer: one step from B = 0 shrinks A by (1 - lr wd), nothing else', async () => {
    const setup = ['--target', 'q_proj', '--lora-bias', 'lora_only', '--lr', '1e-3'];
    const one = (out: string, wd: string) =>
      train(
        join(dir!, out),
        ...setup,
        '--steps',
        '1',
        '--max-grad-norm',
        '0',
        '--weight-decay',
        wd,
      );
    await one('wd0', '0');
    await one('wd5', '0.5');
    const [plain, decayed] = [
      await tensors(join(dir!, 'wd0', 'adapter')),
      await tensors(join(dir!, 'wd5', 'adapter')),
    ];
    let [scaledA, sameBias] = [0, 0];
    for (const [key, got] of decayed) {
      const want = plain.get(key)!;
      if (key.endsWith('.A')) {
        // B = 0 gives A no gradient: only the decay moves it.
        got.forEach((v, i) => expect(v).toBeCloseTo(want[i]! * (1 - 1e-3 * 0.5), 7));
        scaledA++;
      } else if (key.endsWith('.bias')) {
        expect(maxAbsDiff(got, want), key).toBe(0);
        sameBias++;
      }
    }
    expect([scaledA, sameBias]).toEqual([2, 2]);
  });

  it('NEFTune (--neftune-noise-alpha 5): the run says so, the same seed repeats it, and it changes training', async () => {
    const args = ['--target', 'q_proj,v_proj', '--lr', '1e-2'];
    const noisy = await train(join(dir!, 'neft-a'), ...args, '--neftune-noise-alpha', '5');
    expect(noisy.stdout).toContain('NEFTune noise alpha 5');
    await train(join(dir!, 'neft-b'), ...args, '--neftune-noise-alpha', '5');
    await train(join(dir!, 'neft-off'), ...args);
    const [a, b, off] = (await Promise.all(
      ['neft-a', 'neft-b', 'neft-off'].map((d) => tensors(join(dir!, d, 'adapter'))),
    )) as [Map<string, Float32Array>, Map<string, Float32Array>, Map<string, Float32Array>];
    let moved = 0;
    for (const [key, values] of a) {
      expect(maxAbsDiff(values, b.get(key)!), key).toBe(0);
      moved = Math.max(moved, maxAbsDiff(values, off.get(key)!));
    }
    expect(moved).toBeGreaterThan(1e-4);
  });

  it('a regex target is saved as a string; layers_to_transform keeps the listed layers', async () => {
    const regex = join(dir!, 'regex');
    await train(regex, '--target-regex', '.*\\.1\\.self_attn\\.(q_proj|v_proj)');
    const config = await readJson<Record<string, unknown>>(
      join(regex, 'adapter', 'adapter_config.json'),
    );
    expect(config.target_modules).toBe('.*\\.1\\.self_attn\\.(q_proj|v_proj)');
    const layer1 = (k: string) => k.includes('.layers.1.self_attn.');
    expect((await keysOf(join(regex, 'adapter'))).every(layer1)).toBe(true);

    const layers = join(dir!, 'layers');
    await train(layers, '--target', 'q_proj,o_proj', '--layers-to-transform', '0');
    const keys = await keysOf(join(layers, 'adapter'));
    expect(keys).toHaveLength(4);
    expect(keys.every((k) => k.includes('.layers.0.'))).toBe(true);
    const c = await readJson<Record<string, unknown>>(
      join(layers, 'adapter', 'adapter_config.json'),
    );
    expect(c.layers_to_transform).toEqual([0]);
  });

  it('a run with the options resumes bitwise from its checkpoint (embedding, whole tensors)', async () => {
    await expectResumesBitwise('options', OPTIONS);
  });

  it("without --target, a Llama-family model gets its family's default targets", async () => {
    const out = join(dir!, 'default');
    const run = await train(out);
    expect(run.stdout).toContain('on q_proj, v_proj,');
    const c = await readJson<Record<string, unknown>>(join(out, 'adapter', 'adapter_config.json'));
    expect(c.target_modules).toEqual(['q_proj', 'v_proj']);
  });

  it('refuses contradicting options with exit 2, naming both', async () => {
    const cases: [string[], RegExp][] = [
      [['--target', 'q_proj', '--target-regex', '.*q_proj'], /--target and --target-regex/],
      [
        ['--target-regex', '.*q_proj', '--layers-to-transform', '0'],
        /--target-regex and --layers-to-transform/,
      ],
      [['--full-finetune', '--lora-bias', 'all'], /--full-finetune and --lora-bias/],
      [
        ['--full-finetune', '--modules-to-save', 'lm_head'],
        /--full-finetune and --modules-to-save/,
      ],
      [['--init', 'pissa', '--rank-pattern', 'q_proj=2'], /--init and --rank-pattern/],
      [['--init', 'pissa', '--use-dora'], /--init and --use-dora/],
      [['--init', 'pissa_niter_2', '--use-dora'], /--init and --use-dora/],
      [['--init', 'pissa_niter_x'], /--init pissa_niter_x: give one of kaiming, .*pissa_niter_N/],
      [['--init', 'olora', '--use-dora'], /--init and --use-dora/],
      [['--full-finetune', '--use-dora'], /--full-finetune and --use-dora/],
      [['--full-finetune', '--loraplus-lr-ratio', '16'], /--full-finetune and --loraplus-lr-ratio/],
      // --init-adapter's adapter_config.json sets the LoRA options (checked before it is read).
      [['--init-adapter', dir!, '--lora-r', '8'], /--init-adapter and --lora-r/],
      [['--init-adapter', dir!, '--use-dora'], /--init-adapter and --use-dora/],
      [['--init-adapter', dir!, '--full-finetune'], /--full-finetune and --init-adapter/],
      [['--init-adapter', dir!], /--init-adapter .*: cannot read .*adapter_config\.json/],
    ];
    for (const [args, message] of cases) {
      const out = join(dir!, 'refused');
      const r = await lorafleet(['train', '--model', model, '--data', ids, '--out', out, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const bad = await lorafleet([
      ...['train', '--model', model, '--data', ids, '--out', join(dir!, 'bad')],
      ...['--modules-to-save', 'no_such_module'],
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('modules_to_save "no_such_module" matches no module');
  });
});

describe('LoRA on a tied embedding (GPT-2)', () => {
  it('trains and evaluates unmerged; merge refuses and says why; modules_to_save refuses wte', async () => {
    const gpt2 = await initTinyModel(dir!, 'gpt2-tied');
    const text = await writeJsonl(join(dir!, 'text.jsonl'), numberedPatternRecords(30));
    const out = join(dir!, 'gpt2-wte');
    const args = ['--model', gpt2, '--data', text, ...ROWS, '--lr', '1e-2'];
    await lorafleetOk(['train', ...args, '--out', out, '--target', 'wte,c_attn']);
    const keys = await keysOf(join(out, 'adapter'));
    expect(keys).toContain('base_model.model.transformer.wte.lora_embedding_A');
    const data = ['--data', text, '--seq-len', '32'];
    const adapted = await evalJson(['--model', gpt2, '--adapter', join(out, 'adapter'), ...data]);
    expect(adapted.adaptedModules).toBe(3); // wte + c_attn x 2 layers
    const merge = await lorafleet([
      ...['merge', '--model', gpt2, '--adapter', join(out, 'adapter')],
      ...['--out', join(dir!, 'gpt2-merged')],
    ]);
    expect(merge.code).toBe(1);
    expect(merge.stderr).toContain('LoRA on transformer.wte, which the output head shares');
    const saved = await lorafleet([
      'train',
      ...args,
      '--out',
      join(dir!, 'x'),
      '--modules-to-save',
      'wte',
    ]);
    expect(saved.code).toBe(2);
    expect(saved.stderr).toContain('which the output head shares (tie_word_embeddings)');
  });
});
