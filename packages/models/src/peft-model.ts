// PEFT's LoRA options on a live CausalLM: add the adapters a run trains,
// list its trainable parameters, export them as a PEFT adapter, and load a
// PEFT adapter (lora_A/B, lora_embedding_A/B, whole tensors) back into a model.
import {
  INIT_TITLES,
  type LoraAdapterConfig,
  type LoraEmbedding,
  type LoraInit,
  type LoraLinear,
  type LoraModuleWeights,
  type PeftAdapter,
  type PeftTensor,
  TrainableParameters,
  changesBase,
  importAdapter,
  moduleAlpha,
  moduleRank,
  tf,
} from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import { REFERENCE_ADAPTER } from './pair-logps.js';
import {
  type PeftLoraOptions,
  fullyTrainedTensors,
  moduleSettings,
  savedTargets,
  selectPeftModules,
} from './peft-lora.js';

/** What a LoRA run trains on a model. */
export interface PeftTrainables {
  linears: LoraLinear[];
  embeddings: LoraEmbedding[];
  /** Base tensors trained in full: Hugging Face name, adapter-file key, variable. */
  tensors: { name: string; key: string; variable: tf.Variable }[];
  /** LoRA slots first (linears by path, A before B; then embeddings), then the whole tensors. */
  params: TrainableParameters;
}

/**
 * Adds adapter `name` where the options select, with each module's rank and
 * alpha, and gathers every trainable parameter. Asynchronous: PiSSA reads W.
 */
export async function addPeftLora(
  model: CausalLM,
  name: string,
  o: PeftLoraOptions,
  init: LoraInit,
  seed: number,
): Promise<PeftTrainables> {
  const chosen = selectPeftModules(model.linears(), model.embeddings(), o);
  const residual = changesBase(init.kind) ? INIT_TITLES[init.kind] : null;
  if (o.useDora && residual)
    throw new Error(`${residual} with DoRA (use_dora) is not supported: use one or the other`);
  if (o.useDora && chosen.embeddings.length > 0) {
    throw new Error(
      `DoRA (use_dora) adapts linear layers only; ${chosen.embeddings[0]!.name} is an embedding`,
    );
  }
  if (residual && chosen.embeddings.length > 0) {
    throw new Error(
      `${residual} initialises linear layers only; ${chosen.embeddings[0]!.name} is an embedding`,
    );
  }
  for (const layer of chosen.linears)
    await layer.addAdapterAsync(name, moduleSettings(o, layer.name), init, seed);
  for (const e of chosen.embeddings) e.addAdapter(name, moduleSettings(o, e.name), seed);
  const adapted = new Set([...chosen.linears, ...chosen.embeddings].map((m) => m.name));
  const weights = new Map(model.namedWeights());
  const tied = model
    .embeddings()
    .filter((e) => e.tiedToHead)
    .map((e) => e.name);
  const tensors = fullyTrainedTensors([...weights.keys()], adapted, o, tied).map((t) => ({
    ...t,
    variable: weights.get(t.name)!,
  }));
  const lora = TrainableParameters.fromLoraLayers(chosen.linears).slots.map(
    (s) => [s.name, s.variable] as const,
  );
  const embeddingSlots = chosen.embeddings.flatMap((e) => {
    const { a, b } = e.activeAdapter!;
    return [[`${e.name}.lora_embedding_A`, a] as const, [`${e.name}.lora_embedding_B`, b] as const];
  });
  const whole = tensors.map((t) => [t.key, t.variable] as const);
  const params = new TrainableParameters([...lora, ...embeddingSlots, ...whole]);
  return { ...chosen, tensors, params };
}

type AdapterMeta = Pick<
  LoraAdapterConfig,
  'initLoraWeights' | 'baseModelNameOrPath' | 'taskType'
> & {
  /** ModelFamily.targetScope of the model: target_modules then lists module paths (savedTargets). */
  targetScope?: string;
};

/**
 * The trained adapter `name` as a PEFT adapter with LoraConfig's fields.
 * Asynchronous: factors that a forward pass moved to a GPU are read with
 * `await data()`, the only read webgpu allows under Node.
 */
export async function exportPeftAdapter(
  t: PeftTrainables,
  name: string,
  o: PeftLoraOptions,
  meta: AdapterMeta,
): Promise<PeftAdapter> {
  const { targetScope, ...fields } = meta;
  const config: LoraAdapterConfig = {
    ...fields,
    r: o.r,
    loraAlpha: o.alpha,
    loraDropout: o.dropout,
    useRslora: o.rslora,
    ...(o.useDora ? { useDora: true } : {}),
    fanInFanOut: t.linears[0]?.fanInFanOut ?? false,
    targetModules: savedTargets(o.targets, [...t.linears, ...t.embeddings], targetScope),
    bias: o.bias ?? 'none',
  };
  if (o.rankPattern && Object.keys(o.rankPattern).length > 0)
    config.rankPattern = { ...o.rankPattern };
  if (o.alphaPattern && Object.keys(o.alphaPattern).length > 0)
    config.alphaPattern = { ...o.alphaPattern };
  if (o.layersToTransform?.length) config.layersToTransform = [...o.layersToTransform];
  if (o.layersPattern?.length) config.layersPattern = [...o.layersPattern];
  if (o.modulesToSave?.length) config.modulesToSave = [...o.modulesToSave];
  const read = async (v: tf.Variable) => (await v.data()) as Float32Array;
  const pair = async (
    m: { a: tf.Variable; b: tf.Variable; settings: { r: number } },
    inF: number,
    outF: number,
  ) => ({
    a: await read(m.a),
    b: await read(m.b),
    r: m.settings.r,
    inFeatures: inF,
    outFeatures: outF,
  });
  const modules = new Map<string, LoraModuleWeights>();
  for (const l of t.linears) {
    const adapter = l.adapter(name);
    const m = adapter.magnitude;
    modules.set(l.name, {
      ...(await pair(adapter, l.inFeatures, l.outFeatures)),
      ...(m ? { magnitude: await read(m) } : {}),
    });
  }
  const adapter: PeftAdapter = { config, modules };
  if (t.embeddings.length > 0) {
    adapter.embeddings = new Map();
    for (const e of t.embeddings)
      adapter.embeddings.set(e.name, await pair(e.adapter(name), e.numEmbeddings, e.dim));
  }
  if (t.tensors.length > 0) {
    adapter.tensors = new Map<string, PeftTensor>();
    for (const x of t.tensors)
      adapter.tensors.set(x.key, { shape: [...x.variable.shape], data: await read(x.variable) });
  }
  return adapter;
}

/**
 * Adds `adapter` as DPO's REFERENCE_ADAPTER, the frozen copy its reference
 * pass switches to (dpo.ts withReference), and leaves `active` on where a
 * layer has it (none elsewhere). An adapter that trains base tensors in place
 * (modules_to_save, biases) is refused: importing it would change the model
 * the policy runs too.
 */
export function addReferenceAdapter(model: CausalLM, adapter: PeftAdapter, active: string): void {
  if ((adapter.tensors?.size ?? 0) > 0) {
    throw new Error(
      "DPO's reference adapter trains base tensors in place (modules_to_save or biases), which a frozen copy cannot keep: merge it (lorafleet merge) and use the merged model",
    );
  }
  importPeftAdapter(model, adapter, REFERENCE_ADAPTER);
  for (const layer of [...model.linears(), ...model.embeddings()])
    layer.setActive(layer.adapterNames().includes(active) ? active : null);
}

/**
 * Loads a PEFT adapter into a model: LoRA on linears and embeddings (active,
 * not merged) and whole tensors written over the base ones (PEFT's
 * modules_to_save and trained biases replace them at inference too).
 * Returns the number of adapted modules.
 */
export function importPeftAdapter(model: CausalLM, adapter: PeftAdapter, name: string): number {
  importAdapter(model.linears(), adapter, name);
  const { config } = adapter;
  const embeddings = new Map(model.embeddings().map((e) => [e.name, e]));
  for (const [path, w] of adapter.embeddings ?? []) {
    const e = embeddings.get(path);
    if (!e) {
      const have = [...embeddings.keys()].join(', ');
      throw new Error(
        `the adapter adapts embedding ${path}, which the model lacks (it has ${have})`,
      );
    }
    if (w.inFeatures !== e.numEmbeddings || w.outFeatures !== e.dim) {
      throw new Error(
        `${path}: the adapter is for a [${w.inFeatures}, ${w.outFeatures}] embedding, the model's is [${e.numEmbeddings}, ${e.dim}]`,
      );
    }
    const settings = {
      r: moduleRank(config, path),
      alpha: moduleAlpha(config, path),
      dropout: config.loraDropout,
      rslora: config.useRslora,
    };
    e.loadAdapter(name, settings, w.a, w.b);
  }
  const weights = new Map(model.namedWeights());
  for (const [key, t] of adapter.tensors ?? []) {
    const target = key.replace('.base_layer.', '.');
    const v = weights.get(target);
    if (!v) throw new Error(`the adapter holds ${key}, but the model has no tensor ${target}`);
    if (v.shape.join() !== t.shape.join()) {
      throw new Error(
        `${key}: the adapter's is [${t.shape.join(', ')}], the model's [${v.shape.join(', ')}]`,
      );
    }
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape)));
  }
  return adapter.modules.size + (adapter.embeddings?.size ?? 0);
}
