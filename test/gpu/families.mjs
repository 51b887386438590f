// The Llama family's parity with Hugging Face transformers and PEFT (the
// Node.js half; reference.py make-families and check-families are the
// Python half): tiny random models of each model_type in families.json,
// which transformers makes and saves (the project makes them for the GPU
// check's smoke run); an adapter of each from `lorafleet train` and its
// merged folder from `lorafleet merge`; the project's logits of each, with
// and without the adapter, per backend. The GPU check runs it on the GPU
// machine; test/transformers-parity.test.ts on cpu and wasm in `pnpm test`.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Buffer } from 'node:buffer';
import { importAdapter, loadPeftAdapter, tf } from '../../packages/core/dist/src/index.js';
import {
  loadModel,
  modelConfigFromJson,
  randomModelWeights,
  writeModelFolder,
} from '../../packages/models/dist/src/index.js';
import { fixedIds, log, start, stop, writeJson } from './common.mjs';

const CLI = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '../../apps/coordinator/bin/lorafleet.js',
);

/** model name -> config.json fields, shared with reference.py. */
export const FAMILIES = JSON.parse(
  readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'families.json'), 'utf8'),
);

/** The smoke run's stand-in for `reference.py make-families`: the project's own random folders. */
export async function familyModels(dir) {
  for (const [name, json] of Object.entries(FAMILIES)) {
    const config = modelConfigFromJson(json, `families.json ${name}`);
    await writeModelFolder(join(dir, name), config, randomModelWeights(config, 17));
  }
  await writeJson(join(dir, 'ids.json'), { ids: fixedIds(2, 24, 300, 13) });
  log(`family models written to ${dir}: ${Object.keys(FAMILIES).join(', ')}`);
}

/**
 * Each family folder's logits on `backend`, as DIR/NAME/logits-BACKEND/
 * {base.f32, meta.json}, and with DIR/adapted/NAME/run/adapter (familyAdapters) where
 * there is one, adapted.f32.
 */
export async function familyLogits(dir, backend) {
  const { ids } = JSON.parse(readFileSync(join(dir, 'ids.json'), 'utf8'));
  await start(backend);
  for (const name of Object.keys(FAMILIES)) {
    const out = join(dir, name, `logits-${backend}`);
    const adapter = join(dir, 'adapted', name, 'run', 'adapter');
    const { model, config } = await loadModel(join(dir, name));
    const input = tf.tensor2d(ids.flat(), [ids.length, ids[0].length], 'int32');
    const files = { 'base.f32': await logitsOf(model, input) };
    if (existsSync(adapter)) {
      importAdapter(model.linears(), await loadPeftAdapter(adapter), 'default');
      files['adapted.f32'] = await logitsOf(model, input);
    }
    input.dispose();
    model.dispose();
    await writeJson(join(out, 'meta.json'), {
      backend,
      model: config.modelType,
      shape: [ids.length, ids[0].length, config.vocabSize],
      files: Object.keys(files),
    });
    for (const [file, values] of Object.entries(files)) {
      await writeFile(
        join(out, file),
        Buffer.from(values.buffer, values.byteOffset, values.byteLength),
      );
    }
  }
  const errors = await stop();
  log(
    `family logits on ${backend}: ${Object.keys(FAMILIES).join(', ')}; webgpu errors ${errors.length}`,
  );
  if (errors.length > 0) throw new Error(`webgpu errors: ${errors.join('; ')}`);
}

async function logitsOf(model, input) {
  const logits = model.forward(input);
  try {
    return await logits.data();
  } finally {
    logits.dispose();
  }
}

/**
 * For each family folder: an adapter on every linear layer from three steps
 * of `lorafleet train` (DIR/adapted/NAME/run/adapter; LoRA, and DoRA for every
 * second family) and the model with it merged by `lorafleet merge`
 * (DIR/adapted/NAME/merged), both on wasm, as a user makes them; for a LoRA
 * one, the adapter `lorafleet extract` makes from the merged folder
 * (DIR/adapted/NAME/extracted).
 */
export async function familyAdapters(dir) {
  const rows = fixedIds(16, 20, 256, 21).map((ids) => JSON.stringify({ input_ids: ids }));
  const data = join(dir, 'adapter-data.jsonl');
  await writeFile(data, rows.join('\n') + '\n');
  const shape = ['--steps', '3', '--batch-size', '4', '--seq-len', '16', '--lr', '0.05'];
  const lora = [
    '--lora-r',
    '4',
    '--lora-alpha',
    '8',
    '--lora-dropout',
    '0',
    '--target',
    'all-linear',
  ];
  for (const [i, name] of Object.keys(FAMILIES).entries()) {
    const [folder, run] = [join(dir, name), join(dir, 'adapted', name, 'run')];
    const dora = i % 2 === 1 ? ['--use-dora'] : [];
    const common = ['--backend', 'wasm'];
    lorafleet([
      'train',
      '--model',
      folder,
      '--data',
      data,
      '--out',
      run,
      ...shape,
      ...lora,
      ...dora,
      '--no-dashboard',
      ...common,
    ]);
    lorafleet([
      'merge',
      '--model',
      folder,
      '--adapter',
      join(run, 'adapter'),
      '--overwrite',
      '--out',
      join(dir, 'adapted', name, 'merged'),
      ...common,
    ]);
    // A LoRA merge changes each module by a rank-4 delta: `lorafleet extract` recovers it.
    if (dora.length === 0) {
      const merged = join(dir, 'adapted', name, 'merged');
      const extracted = join(dir, 'adapted', name, 'extracted');
      lorafleet([
        'extract',
        '--base',
        folder,
        '--tuned',
        merged,
        '--rank',
        '4',
        '--out',
        extracted,
      ]);
    }
  }
  log(
    `family adapters (lorafleet train, all-linear, DoRA for every second), merged folders and extracted adapters in ${dir}`,
  );
}

function lorafleet(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) {
    throw new Error(`lorafleet ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
  }
  log(r.stdout.trim().split('\n').at(-1));
}
