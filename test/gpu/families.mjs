// The GPU check's Llama-family parity with Hugging Face transformers (the
// Node.js half; reference.py make-families and check-families are the
// Python half): tiny random models of each model_type in families.json,
// which transformers makes and saves on the GPU machine (the project makes
// them for the smoke run), and the project's logits of each, per backend.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Buffer } from 'node:buffer';
import { tf } from '../../packages/core/dist/src/index.js';
import {
  loadModel,
  modelConfigFromJson,
  randomModelWeights,
  writeModelFolder,
} from '../../packages/models/dist/src/index.js';
import { fixedIds, log, start, stop, writeJson } from './common.mjs';

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

/** Each family folder's logits on `backend`, as DIR/NAME/logits-BACKEND/{base.f32, meta.json}. */
export async function familyLogits(dir, backend) {
  const { ids } = JSON.parse(readFileSync(join(dir, 'ids.json'), 'utf8'));
  await start(backend);
  for (const name of Object.keys(FAMILIES)) {
    const out = join(dir, name, `logits-${backend}`);
    const { model, config } = await loadModel(join(dir, name));
    const input = tf.tensor2d(ids.flat(), [ids.length, ids[0].length], 'int32');
    const logits = model.forward(input);
    const values = await logits.data();
    tf.dispose([input, logits]);
    model.dispose();
    await writeJson(join(out, 'meta.json'), {
      backend,
      model: config.modelType,
      shape: [ids.length, ids[0].length, config.vocabSize],
      files: ['base.f32'],
    });
    await writeFile(
      join(out, 'base.f32'),
      Buffer.from(values.buffer, values.byteOffset, values.byteLength),
    );
  }
  const errors = await stop();
  log(
    `family logits on ${backend}: ${Object.keys(FAMILIES).join(', ')}; webgpu errors ${errors.length}`,
  );
  if (errors.length > 0) throw new Error(`webgpu errors: ${errors.join('; ')}`);
}
