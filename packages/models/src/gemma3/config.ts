// Gemma 3's multimodal config.json (model_type gemma3: Gemma3ForConditionalGeneration,
// the 4B, 12B and 27B models). Its text_config is a Gemma 3 decoder, which
// the Llama family computes under the module path model.language_model; the
// rest (vision_config, the image token ids) describes a vision tower and
// projector that text fine-tuning never runs, kept to be written back.
import type { ModelConfig } from '../causal-lm.js';
import { ModelConfigError } from '../gpt2/config.js';
import { withoutFields, withoutStorageFields } from '../weights-folder.js';
import {
  type LlamaConfig,
  llamaConfigFromJson,
  llamaConfigToJson,
  llamaModelConfig,
} from '../llama/config.js';

type Json = Record<string, unknown>;

/** The decoder's module path inside Gemma3ForConditionalGeneration (transformers v5, PEFT). */
export const GEMMA3_TEXT_MODEL = 'model.language_model';

/** A Gemma 3 decoder inside its multimodal wrapper. */
export interface Gemma3Config extends LlamaConfig {
  /**
   * config.json's fields around the text model, as read (vision_config, the
   * image token ids): written back on save. Neither these nor textExtras
   * change with a save, so a saved folder reads as the same config.
   */
  wrapper: Json;
  /** text_config's fields that the decoder's config does not write (pad_token_id, ...), as read. */
  textExtras: Json;
}

/** The top-level fields a save writes itself. */
const WRITTEN = ['architectures', 'model_type', 'text_config', 'tie_word_embeddings'];

/** text_config as llamaConfigToJson writes the decoder (its class and storage fields are the wrapper's). */
function decoderJson(c: LlamaConfig): Json {
  return withoutFields(llamaConfigToJson(c), ['architectures', 'torch_dtype', 'use_cache']);
}

/**
 * Gemma3TextConfig's defaults (transformers v5) for the fields a saved
 * text_config leaves out: save_pretrained writes a nested config's changes
 * only, so gemma-3-4b-it's text_config lacks even vocab_size.
 */
const TEXT_DEFAULTS: Json = {
  vocab_size: 262_208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  bos_token_id: 2,
  eos_token_id: 1,
};

const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function gemma3ConfigFromJson(j: Json, source: string): ModelConfig<Gemma3Config> {
  const text = j.text_config ?? {};
  if (!isObject(text))
    throw new ModelConfigError(
      `${source}: text_config is ${JSON.stringify(text)}, expected the language model's config object`,
    );
  if (text.model_type !== undefined && text.model_type !== 'gemma3_text')
    throw new ModelConfigError(
      `${source}: text_config's model_type is ${JSON.stringify(text.model_type)}, expected "gemma3_text"`,
    );
  // Gemma3ForConditionalGeneration ties its head by the top-level field (default true).
  const tie = j.tie_word_embeddings ?? true;
  if (typeof tie !== 'boolean')
    throw new ModelConfigError(
      `${source}: tie_word_embeddings is ${JSON.stringify(tie)}, expected true or false`,
    );
  const decoder = llamaConfigFromJson(
    { ...TEXT_DEFAULTS, ...text, tie_word_embeddings: tie },
    'gemma3_text',
    `${source} (text_config)`,
  );
  const arch: Gemma3Config = {
    ...decoder,
    modulePrefix: GEMMA3_TEXT_MODEL,
    wrapper: withoutFields(withoutStorageFields(j), WRITTEN),
    textExtras: withoutFields(text, [...Object.keys(decoderJson(decoder)), 'model_type']),
  };
  return { ...llamaModelConfig(arch), modelType: 'gemma3', arch };
}

/** config.json for Gemma3ForConditionalGeneration: the wrapper as read, text_config as computed. */
export function gemma3ConfigToJson(c: Gemma3Config, extra: Json = {}): Json {
  // Token ids go where the text model reads them (lorafleet init sets its tokenizer's).
  const { bos_token_id, eos_token_id, ...top } = extra;
  const ids = Object.entries({ bos_token_id, eos_token_id }).filter(([, v]) => v !== undefined);
  return {
    ...c.wrapper,
    architectures: ['Gemma3ForConditionalGeneration'],
    model_type: 'gemma3',
    text_config: {
      ...c.textExtras,
      ...decoderJson(c),
      ...Object.fromEntries(ids),
      model_type: 'gemma3_text',
    },
    tie_word_embeddings: c.tieWordEmbeddings,
    ...top,
  };
}
