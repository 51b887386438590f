// Between live LoraLinear layers and PEFT adapter folders: what a trainer
// saves and what inference loads.
import type { LoraAdapterConfig, LoraModuleWeights, PeftAdapter } from '../io/peft.js';
import { moduleAlpha, moduleRank } from '../io/peft.js';
import type { LoraLinear } from './linear.js';

/** The named adapter of each layer as a PEFT adapter; `config` supplies the file's fields. */
export function exportAdapter(
  layers: readonly LoraLinear[],
  adapterName: string,
  config: Omit<LoraAdapterConfig, 'r' | 'loraAlpha' | 'loraDropout' | 'useRslora' | 'fanInFanOut'>,
): PeftAdapter {
  const modules = new Map<string, LoraModuleWeights>();
  let first: LoraLinear | undefined;
  for (const layer of layers) {
    const adapter = layer.adapter(adapterName);
    const firstSettings = first?.adapter(adapterName).settings;
    if (first && firstSettings) {
      const s = adapter.settings;
      if (
        s.r !== firstSettings.r ||
        s.alpha !== firstSettings.alpha ||
        s.rslora !== firstSettings.rslora ||
        (s.useDora ?? false) !== (firstSettings.useDora ?? false)
      ) {
        throw new Error(
          `adapter "${adapterName}": ${layer.name} has r=${s.r}, alpha=${s.alpha} but ${first.name} has ` +
            `r=${firstSettings.r}, alpha=${firstSettings.alpha}; per-module ranks are not exported yet`,
        );
      }
      if (layer.fanInFanOut !== first.fanInFanOut) {
        throw new Error(
          `adapter "${adapterName}": layers disagree on fan_in_fan_out (${layer.name}, ${first.name})`,
        );
      }
    }
    first ??= layer;
    modules.set(layer.name, {
      a: adapter.a.dataSync() as Float32Array,
      b: adapter.b.dataSync() as Float32Array,
      ...(adapter.magnitude ? { magnitude: adapter.magnitude.dataSync() as Float32Array } : {}),
      r: adapter.settings.r,
      inFeatures: layer.inFeatures,
      outFeatures: layer.outFeatures,
    });
  }
  if (!first) throw new Error(`adapter "${adapterName}": no layers to export`);
  const settings = first.adapter(adapterName).settings;
  return {
    config: {
      ...config,
      r: settings.r,
      loraAlpha: settings.alpha,
      loraDropout: settings.dropout,
      useRslora: settings.rslora,
      ...(settings.useDora ? { useDora: true } : {}),
      fanInFanOut: first.fanInFanOut,
    },
    modules,
  };
}

/**
 * Loads a PEFT adapter into the layers of the same module paths as adapter
 * `adapterName` and makes it active. Every module of the file must find its
 * layer, with matching shapes and orientation.
 */
export function importAdapter(
  layers: readonly LoraLinear[],
  adapter: PeftAdapter,
  adapterName: string,
): void {
  const byName = new Map(layers.map((layer) => [layer.name, layer]));
  const missing = [...adapter.modules.keys()].filter((path) => !byName.has(path));
  if (missing.length > 0) {
    throw new Error(
      `the adapter has modules the model lacks: ${missing.slice(0, 5).join(', ')}` +
        `${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}; is it for another base model?`,
    );
  }
  const { config } = adapter;
  for (const [path, weights] of adapter.modules) {
    const layer = byName.get(path)!;
    if (layer.fanInFanOut !== config.fanInFanOut) {
      throw new Error(
        `${path}: adapter has fan_in_fan_out=${config.fanInFanOut}, the layer ${layer.fanInFanOut}`,
      );
    }
    if (weights.inFeatures !== layer.inFeatures || weights.outFeatures !== layer.outFeatures) {
      throw new Error(
        `${path}: adapter is for [${weights.outFeatures}, ${weights.inFeatures}] (out, in), ` +
          `the layer is [${layer.outFeatures}, ${layer.inFeatures}]`,
      );
    }
    const settings = {
      r: moduleRank(config, path),
      alpha: moduleAlpha(config, path),
      dropout: config.loraDropout,
      rslora: config.useRslora,
      useDora: config.useDora ?? false,
    };
    layer.loadAdapter(adapterName, settings, weights.a, weights.b, weights.magnitude);
  }
}
