// tokenizer_config.json's special tokens: which id ends a document (eos_token),
// whether one starts it (add_bos_token, else tokenizer.json's post-processor),
// and the strings chat templates receive as bos_token / eos_token.
import { type JsonObject, type JsonPlace, asArray, asObject, at, fail } from './json.js';

export interface SpecialTokenIds {
  eosId: number;
  bosId?: number;
  /** bos_token, eos_token, pad_token, unk_token as text (absent when not set). */
  strings: Partial<Record<SpecialTokenName, string>>;
}

type SpecialTokenName = 'bos_token' | 'eos_token' | 'pad_token' | 'unk_token';
const NAMES: readonly SpecialTokenName[] = ['bos_token', 'eos_token', 'pad_token', 'unk_token'];

/** GPT-2 style folders often state no eos_token: this is their end of text. */
const DEFAULT_EOS = '<|endoftext|>';

/** A special token in tokenizer_config.json: a string or {"content": ...}; null means none. */
function tokenText(value: unknown, place: JsonPlace): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  const content = asObject(value, place)['content'];
  if (typeof content !== 'string')
    fail(place, `expected a string or {"content": "..."}, found ${JSON.stringify(value)}`);
  return content;
}

export function specialTokenIds(
  json: JsonObject,
  config: JsonObject | undefined,
  idOf: (token: string) => number | undefined,
  sources: { tokenizerJson: string; tokenizerConfig: string },
): SpecialTokenIds {
  const place: JsonPlace = { file: sources.tokenizerConfig, path: '$' };
  const strings: SpecialTokenIds['strings'] = {};
  for (const name of NAMES) {
    const text = tokenText(config?.[name], at(place, name));
    if (text !== undefined) strings[name] = text;
  }
  const resolve = (name: SpecialTokenName, text: string): number => {
    const id = idOf(text);
    if (id === undefined) {
      fail(at(place, name), `${JSON.stringify(text)} is not a token of ${sources.tokenizerJson}`);
    }
    return id;
  };
  const eosText = strings.eos_token ?? (idOf(DEFAULT_EOS) !== undefined ? DEFAULT_EOS : undefined);
  if (eosText === undefined) {
    fail(
      at(place, 'eos_token'),
      `no eos_token (and no ${JSON.stringify(DEFAULT_EOS)} token): copy tokenizer_config.json from the base model, ` +
        'or add "eos_token": "<the token that ends a document>"',
    );
  }
  const eosId = resolve('eos_token', eosText);

  const addBos = config?.['add_bos_token'];
  if (addBos !== undefined && addBos !== null && typeof addBos !== 'boolean') {
    fail(at(place, 'add_bos_token'), `expected true or false, found ${JSON.stringify(addBos)}`);
  }
  const postBos = postProcessorBos(json['post_processor'], {
    file: sources.tokenizerJson,
    path: '$.post_processor',
  });
  let bosId: number | undefined;
  if (addBos === true) {
    if (strings.bos_token === undefined)
      fail(at(place, 'add_bos_token'), 'is true but bos_token is not set');
    bosId = resolve('bos_token', strings.bos_token);
  } else if (addBos === undefined || addBos === null) {
    bosId = postBos;
  }
  return bosId === undefined ? { eosId, strings } : { eosId, bosId, strings };
}

/**
 * The id a TemplateProcessing post-processor puts before a single sequence
 * (Meta's Llama 3 files add <|begin_of_text|> this way), or undefined.
 */
function postProcessorBos(value: unknown, place: JsonPlace): number | undefined {
  if (value === undefined || value === null) return undefined;
  const o = asObject(value, place);
  switch (o['type']) {
    case 'ByteLevel':
      return undefined;
    case 'Sequence': {
      const steps = asArray(o['processors'], at(place, 'processors'));
      for (const [i, step] of steps.entries()) {
        const bos = postProcessorBos(step, at(at(place, 'processors'), i));
        if (bos !== undefined) return bos;
      }
      return undefined;
    }
    case 'TemplateProcessing': {
      const single = asArray(o['single'], at(place, 'single'));
      const first = single[0] as JsonObject | undefined;
      const special = first?.['SpecialToken'] as JsonObject | undefined;
      if (!special) return undefined;
      const name = special['id'];
      const entry = (o['special_tokens'] as JsonObject | undefined)?.[name as string] as
        JsonObject | undefined;
      const ids = entry?.['ids'];
      if (!Array.isArray(ids) || ids.length !== 1 || typeof ids[0] !== 'number') {
        fail(at(place, 'special_tokens'), `expected one id for ${JSON.stringify(name)}`);
      }
      return ids[0];
    }
    default:
      fail(
        place,
        `post-processor ${JSON.stringify(o['type'])} is not supported (supported: ByteLevel, TemplateProcessing, Sequence); ` +
          'it belongs to encoder models, which lorafleet does not train',
      );
  }
}
