// A Hugging Face `tokenizer.json` (BPE models: GPT-2, Llama 2/3, Mistral,
// Qwen2/3), with tokenizer_config.json's BOS/EOS. The pipeline is that of the
// tokenizers crate: added tokens split out of the raw text, then per piece
// normalizer -> pre-tokenizer -> BPE; decode runs the decoder over the token
// strings. Components this file does not implement are refused by name.
import type { ChatFormat, Tokenizer } from '../types.js';
import { type AddedToken, AddedTokenSplitter, readAddedTokens } from './added-tokens.js';
import { BpeModel } from './bpe-model.js';
import { type Decoder, buildDecoder } from './decoders.js';
import { type JsonObject, type JsonPlace, asObject, at, fail } from './json.js';
import { type Normalizer, buildNormalizer } from './normalizers.js';
import { type PreTokenizer, buildPreTokenizer } from './pre-tokenizers.js';
import { type SpecialTokenIds, specialTokenIds } from './tokenizer-config.js';

export interface TokenizerJsonSources {
  tokenizerJson: string;
  tokenizerConfig: string;
}

export class HfTokenizer implements Tokenizer {
  readonly kind = 'tokenizer-json' as const;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly bosId?: number;
  chat?: ChatFormat;
  /** tokenizer_config.json's special token strings, for chat templates. */
  readonly specialTokens: SpecialTokenIds['strings'];
  private readonly model: BpeModel;
  private readonly normalizer: Normalizer;
  private readonly preTokenizer: PreTokenizer;
  private readonly decoder: Decoder;
  private readonly plainSplitter: AddedTokenSplitter;
  private readonly specialSplitter: AddedTokenSplitter;
  private readonly tokenOf: string[] = [];
  private readonly specialIds = new Set<number>();
  private readonly addedIds = new Map<string, number>();
  readonly addedTokens: readonly AddedToken[];

  /**
   * `json`: the parsed tokenizer.json; `config`: tokenizer_config.json, or
   * undefined when the folder has none.
   */
  constructor(json: JsonObject, config: JsonObject | undefined, sources: TokenizerJsonSources) {
    const root: JsonPlace = { file: sources.tokenizerJson, path: '$' };
    const modelJson = asObject(json['model'], at(root, 'model'));
    const modelType = modelJson['type'] ?? (modelJson['merges'] !== undefined ? 'BPE' : undefined);
    if (modelType !== 'BPE') {
      fail(
        at(at(root, 'model'), 'type'),
        `model ${JSON.stringify(modelType)} is not supported: lorafleet reads BPE tokenizers ` +
          '(GPT-2, Llama 2/3, Mistral, Qwen2/3); Unigram, WordPiece and WordLevel are not implemented',
      );
    }
    this.model = new BpeModel(modelJson, at(root, 'model'));
    this.normalizer = buildNormalizer(json['normalizer'], at(root, 'normalizer'));
    this.preTokenizer = buildPreTokenizer(json['pre_tokenizer'], at(root, 'pre_tokenizer'));
    this.decoder = buildDecoder(json['decoder'], at(root, 'decoder'));
    this.addedTokens = readAddedTokens(json['added_tokens'], at(root, 'added_tokens'));
    for (const [token, id] of this.model.tokenIds) this.tokenOf[id] = token;
    for (const t of this.addedTokens) {
      this.tokenOf[t.id] = t.content;
      this.addedIds.set(t.content, t.id);
      if (t.special) this.specialIds.add(t.id);
    }
    this.plainSplitter = new AddedTokenSplitter(this.addedTokens.filter((t) => !t.special));
    this.specialSplitter = new AddedTokenSplitter(this.addedTokens);
    const ids = specialTokenIds(json, config, (token) => this.idOf(token), sources);
    this.eosId = ids.eosId;
    if (ids.bosId !== undefined) this.bosId = ids.bosId;
    this.specialTokens = ids.strings;
    this.vocabSize = Math.max(this.tokenOf.length, this.eosId + 1);
  }

  /**
   * Plain text to ids. Special tokens' text ("<|im_end|>", "</s>") is encoded
   * as characters, never as the control token, so data cannot inject them;
   * non-special added tokens ("<think>") are matched as Hugging Face does.
   */
  encode(text: string): number[] {
    return this.encodeWith(this.plainSplitter, text);
  }

  /** Like `encode`, but special tokens spelled in the text become their ids (rendered chat templates). */
  encodeWithSpecialTokens(text: string): number[] {
    return this.encodeWith(this.specialSplitter, text);
  }

  /**
   * Special tokens render as nothing; unknown ids as U+FFFD. No
   * clean_up_tokenization_spaces, whatever tokenizer_config.json says:
   * transformers 5 ignores it for BPE (it strips real spaces before
   * punctuation), and every tokenizer.json read here is BPE.
   */
  decode(ids: ArrayLike<number>): string {
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (this.specialIds.has(id)) continue;
      tokens.push(this.tokenOf[id] ?? '\uFFFD');
    }
    const text = this.decoder(tokens).join('');
    return text;
  }

  /** The id of a token string (vocabulary or added token). */
  idOf(token: string): number | undefined {
    return this.addedIds.get(token) ?? this.model.tokenIds.get(token);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  private encodeWith(splitter: AddedTokenSplitter, text: string): number[] {
    const ids: number[] = [];
    for (const segment of splitter.split(text)) {
      if ('id' in segment) {
        ids.push(segment.id);
        continue;
      }
      const normalized = this.normalizer(segment.text);
      for (const piece of this.preTokenizer([{ text: normalized, atStart: segment.atStart }])) {
        for (const id of this.model.encodeWord(piece.text)) ids.push(id);
      }
    }
    return ids;
  }
}
