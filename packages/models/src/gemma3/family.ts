// Gemma 3's multimodal model (families.ts registers it for model_type
// gemma3): its decoder fine-tuned as the Llama family's gemma3_text under
// the module path model.language_model; the vision tower kept as stored.
import type { ModelFamily, WeightMap } from '../causal-lm.js';
import { ModelConfigError } from '../gpt2/config.js';
import { llamaFamily } from '../llama/family.js';
import { LM_HEAD, embedName, llamaWeightShapes, randomLlamaWeights } from '../llama/weights.js';
import { readStoredTensors, readWeightsFolder, writeWeightsFolder } from '../weights-folder.js';
import {
  GEMMA3_TEXT_MODEL,
  type Gemma3Config,
  gemma3ConfigFromJson,
  gemma3ConfigToJson,
} from './config.js';
import { gemma3ModelName, gemma3StoredName, randomGemma3Tower } from './weights.js';

const isTower = (name: string) => gemma3ModelName(name) === null;

export const gemma3Family: ModelFamily<Gemma3Config> = {
  name: 'Gemma 3 (multimodal; its text model)',
  // The decoder's tensors and layers, under their module paths; the tower is none of them.
  defaultTargets: (config) => llamaFamily.defaultTargets(config),
  weightShapes: (config) => llamaFamily.weightShapes(config),
  linearModules: (config) => llamaFamily.linearModules(config),
  embeddingModules: (config) => llamaFamily.embeddingModules(config),
  build: (config, weights, baseDtype) => llamaFamily.build(config, weights, baseDtype),
  readConfig: (json, _modelType, source) => {
    if (json.quantization_config !== undefined)
      throw new ModelConfigError(
        `${source}: a quantized Gemma 3 multimodal folder is not supported: use the unquantized model ` +
          '(with --base-dtype nf4 for QLoRA)',
      );
    return gemma3ConfigFromJson(json, source);
  },
  configToJson: (config, extra) => gemma3ConfigToJson(config.arch, extra),
  readWeights: (dir, config) => {
    const expected = llamaWeightShapes(config.arch);
    const unused = new Map<string, number[]>();
    if (config.arch.tieWordEmbeddings) unused.set(LM_HEAD, expected.get(embedName(config.arch))!);
    return readWeightsFolder(dir, { expected, unused, rename: gemma3ModelName });
  },
  randomWeights: (config, seed) =>
    new Map([
      ...randomLlamaWeights(config.arch, seed),
      ...randomGemma3Tower(config.arch, seed + 1),
    ]),
  writeFolder: async (dir, config, weights, options) => {
    // The tower as the weights hold it (a new random model), else as the source folder stores it.
    let tower = new Map([...weights].filter(([name]) => isTower(name)));
    if (tower.size === 0) {
      if (!options.sourceDir)
        throw new Error(
          'a Gemma 3 multimodal folder is written with its vision tower, copied from the folder ' +
            'the model was loaded from, and none was given',
        );
      tower = await readStoredTensors(options.sourceDir, isTower);
    }
    const shapes = new Map<string, number[]>();
    const stored: WeightMap = new Map();
    for (const [name, shape] of llamaWeightShapes(config.arch)) {
      shapes.set(gemma3StoredName(name), shape);
      const w = weights.get(name);
      if (w) stored.set(gemma3StoredName(name), w);
    }
    for (const [name, w] of tower) {
      shapes.set(gemma3StoredName(name), w.shape);
      stored.set(gemma3StoredName(name), w);
    }
    const json = gemma3ConfigToJson(config.arch, options.configExtra);
    await writeWeightsFolder(dir, json, shapes, stored, options.dtype);
  },
  targetScope: GEMMA3_TEXT_MODEL,
  computes: 'its text model; the vision tower is kept as stored',
};
