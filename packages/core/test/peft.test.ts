import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  float32Entry,
  loadPeftAdapter,
  peftConfigFromJson,
  peftConfigToJson,
  peftKey,
  readSafetensorsFile,
  savePeftAdapter,
  serializeSafetensors,
  type LoraAdapterConfig,
  type LoraModuleWeights,
  type PeftAdapter,
  type TensorEntry,
} from '../src/io/index.js';

const config: LoraAdapterConfig = {
  r: 2,
  loraAlpha: 16,
  loraDropout: 0.05,
  targetModules: ['c_attn', 'c_proj'],
  fanInFanOut: true,
  useRslora: false,
  bias: 'none',
  initLoraWeights: true,
  baseModelNameOrPath: 'gpt2',
  taskType: 'CAUSAL_LM',
  rankPattern: { 'h\\.1\\.attn\\.c_proj': 3 },
};

/** Values chosen to be exact in F16 and BF16, so lossy saves can be compared exactly. */
function module(
  r: number,
  inFeatures: number,
  outFeatures: number,
  seed: number,
): LoraModuleWeights {
  const fill = (n: number) => new Float32Array(n).map((_, i) => ((i * 7 + seed) % 16) / 8 - 1);
  return { a: fill(r * inFeatures), b: fill(outFeatures * r), r, inFeatures, outFeatures };
}

const adapter = (): PeftAdapter => ({
  config,
  modules: new Map([
    ['transformer.h.0.attn.c_attn', module(2, 4, 12, 1)],
    ['transformer.h.1.attn.c_proj', module(3, 4, 4, 2)],
  ]),
});

let root: string;
let n = 0;
const freshDir = () => join(root, `adapter-${n++}`);
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'lorafleet-peft-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

/** An adapter folder with the given config JSON and raw weights, bypassing our own writer. */
async function writeFolder(configJson: unknown, tensors: Record<string, TensorEntry>) {
  const dir = freshDir();
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(configJson));
  await writeFile(join(dir, 'adapter_model.safetensors'), serializeSafetensors(tensors));
  return dir;
}

const weights = (shape: number[]) => float32Entry(new Float32Array(shape[0]! * shape[1]!), shape);

describe('PEFT adapter folders', () => {
  it('round-trips config and weights in F32', async () => {
    const dir = freshDir();
    await savePeftAdapter(dir, adapter());
    expect(await loadPeftAdapter(dir)).toEqual(adapter());
  });

  it.each(['F16', 'BF16'] as const)(
    'saves %s weights that load back as the same values',
    async (dtype) => {
      const dir = freshDir();
      await savePeftAdapter(dir, adapter(), { dtype });
      const file = await readSafetensorsFile(join(dir, 'adapter_model.safetensors'));
      expect([...file.tensors.values()].map((t) => t.dtype)).toEqual([dtype, dtype, dtype, dtype]);
      expect((await loadPeftAdapter(dir)).modules).toEqual(adapter().modules);
    },
  );

  it('writes the names, shapes and config fields PEFT expects', async () => {
    const dir = freshDir();
    await savePeftAdapter(dir, adapter());
    const file = await readSafetensorsFile(join(dir, 'adapter_model.safetensors'));
    expect(file.metadata).toEqual({ format: 'pt' });
    const shapes = Object.fromEntries([...file.tensors].map(([k, v]) => [k, v.shape]));
    expect(shapes).toEqual({
      'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight': [2, 4],
      'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight': [12, 2],
      'base_model.model.transformer.h.1.attn.c_proj.lora_A.weight': [3, 4],
      'base_model.model.transformer.h.1.attn.c_proj.lora_B.weight': [4, 3],
    });
    const json = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
    expect(json).toMatchObject({
      peft_type: 'LORA',
      r: 2,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ['c_attn', 'c_proj'],
      fan_in_fan_out: true,
      use_rslora: false,
      bias: 'none',
      init_lora_weights: true,
      base_model_name_or_path: 'gpt2',
      task_type: 'CAUSAL_LM',
      inference_mode: true,
      modules_to_save: null,
      rank_pattern: { 'h\\.1\\.attn\\.c_proj': 3 },
      alpha_pattern: {},
      use_dora: false,
      revision: null,
    });
    // PEFT writes json.dumps(sort_keys=True); keep diffs against its files small.
    expect(Object.keys(json)).toEqual(Object.keys(json).sort());
    expect(peftKey('h.0.mlp.c_fc', 'B')).toBe('base_model.model.h.0.mlp.c_fc.lora_B.weight');
  });

  it('accepts keys that keep the "default" adapter name', async () => {
    const dir = await writeFolder(peftConfigToJson(config), {
      'base_model.model.h.0.attn.c_attn.lora_A.default.weight': weights([2, 4]),
      'base_model.model.h.0.attn.c_attn.lora_B.default.weight': weights([12, 2]),
    });
    const loaded = await loadPeftAdapter(dir);
    expect([...loaded.modules.keys()]).toEqual(['h.0.attn.c_attn']);
    expect(loaded.modules.get('h.0.attn.c_attn')).toMatchObject({
      r: 2,
      inFeatures: 4,
      outFeatures: 12,
    });
  });
});

describe('PEFT adapter folders: rejections', () => {
  const json = peftConfigToJson(config);
  const A = 'base_model.model.h.0.attn.c_attn.lora_A.weight';
  const B = 'base_model.model.h.0.attn.c_attn.lora_B.weight';

  it('names the missing file', async () => {
    const dir = freshDir();
    await mkdir(dir);
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      `${join(dir, 'adapter_config.json')}: missing; a PEFT adapter folder needs both adapter_config.json and adapter_model.safetensors`,
    );
    // A folder that is something else says what it is.
    await expect(loadPeftAdapter(join(dir, 'nope'))).rejects.toThrow(/nope does not exist\)/);
    await mkdir(join(dir, 'adapter'));
    await writeFile(join(dir, 'adapter', 'adapter_config.json'), JSON.stringify(json));
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      `(${dir} is a training run's folder: its adapter is ${join(dir, 'adapter')})`,
    );
    const model = join(dir, 'model');
    await mkdir(model);
    await writeFile(join(model, 'config.json'), '{}');
    await expect(loadPeftAdapter(model)).rejects.toThrow(/holds a model, config\.json/);
    await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(json));
    await writeFile(join(dir, 'adapter_model.bin'), '');
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      /adapter_model\.safetensors: missing.*adapter_model\.bin/,
    );
  });

  it('rejects configs that are not LoRA or not valid', async () => {
    const dir = await writeFolder({ ...json, peft_type: 'PREFIX_TUNING' }, {});
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      `${join(dir, 'adapter_config.json')}: peft_type is "PREFIX_TUNING", expected "LORA"`,
    );
    expect(() => peftConfigFromJson({ ...json, r: 0 }, 'c.json')).toThrow(
      'c.json: r is 0, expected a positive integer',
    );
    // A regular expression is a string (PEFT's form); it must compile.
    expect(peftConfigFromJson({ ...json, target_modules: '.*attn' }, 'c.json').targetModules).toBe(
      '.*attn',
    );
    expect(() => peftConfigFromJson({ ...json, target_modules: '(attn' }, 'c.json')).toThrow(
      /target_modules is "\(attn", expected a valid regular expression/,
    );
    expect(() =>
      peftConfigFromJson({ ...json, target_modules: '.*attn', layers_to_transform: [0] }, 'c.json'),
    ).toThrow(/layers_to_transform and layers_pattern need target_modules as a list/);
    expect(() => peftConfigFromJson({ ...json, use_dora: 'yes' }, 'c.json')).toThrow(
      /use_dora is "yes", expected true or false/,
    );
    expect(() => peftConfigFromJson({ ...json, rank_pattern: { x: 1.5 } }, 'c.json')).toThrow(
      /rank_pattern "x" is 1.5/,
    );
  });

  it('fills PEFT defaults and ignores fields it does not model', () => {
    const parsed = peftConfigFromJson(
      {
        peft_type: 'LORA',
        r: 4,
        lora_alpha: 8,
        target_modules: ['c_attn'],
        lora_bias: false,
        eva_config: null,
      },
      'c.json',
    );
    expect(parsed).toEqual({
      r: 4,
      loraAlpha: 8,
      loraDropout: 0,
      targetModules: ['c_attn'],
      fanInFanOut: false,
      useRslora: false,
      bias: 'none',
      initLoraWeights: true,
      baseModelNameOrPath: null,
      taskType: null,
    });
  });

  it('rejects an orphan lora_A, naming it', async () => {
    const dir = await writeFolder(json, { [A]: weights([2, 4]) });
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      `module "h.0.attn.c_attn": has "${A}" but no lora_B`,
    );
  });

  it('rejects rank mismatches between A and B and against the config', async () => {
    let dir = await writeFolder(json, { [A]: weights([2, 4]), [B]: weights([12, 3]) });
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      'module "h.0.attn.c_attn": lora_A has rank 2 but lora_B has rank 3 (lora_A is [2, 4], lora_B [12, 3])',
    );
    dir = await writeFolder(json, { [A]: weights([4, 4]), [B]: weights([12, 4]) });
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      /weights have rank 4 but adapter_config\.json gives 2/,
    );
  });

  it('rejects foreign keys and non-2-D weights', async () => {
    let dir = await writeFolder(json, {
      'base_model.model.h.0.attn.c_attn.weight': weights([2, 2]),
    });
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      /tensor "base_model\.model\.h\.0\.attn\.c_attn\.weight": is not named like/,
    );
    dir = await writeFolder(json, {
      [A]: float32Entry(new Float32Array(8), [2, 2, 2]),
      [B]: weights([12, 2]),
    });
    await expect(loadPeftAdapter(dir)).rejects.toThrow(
      `tensor "${A}": has shape [2, 2, 2]; LoRA weights are 2-D`,
    );
  });

  it('refuses to save weights that disagree with their dimensions or the config', async () => {
    const bad = adapter();
    bad.modules.set('transformer.h.0.attn.c_attn', { ...module(2, 4, 12, 1), inFeatures: 5 });
    await expect(savePeftAdapter(freshDir(), bad)).rejects.toThrow(
      /module "transformer\.h\.0\.attn\.c_attn": lora_A has 8 values, not r \* inFeatures = 10/,
    );
    const wrongRank = adapter();
    wrongRank.modules.set('transformer.h.2.attn.c_attn', module(3, 4, 12, 1));
    await expect(savePeftAdapter(freshDir(), wrongRank)).rejects.toThrow(
      /rank 3, but r or rank_pattern gives 2/,
    );
  });
});
