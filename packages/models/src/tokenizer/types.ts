/**
 * Which scheme turns text into ids; recorded so callers can check a checkpoint's pairing.
 * 'absent': a folder without a usable tokenizer (absent-tokenizer.ts), for pre-tokenized data.
 */
export type TokenizerKind = 'bytes' | 'gpt2-bpe' | 'tokenizer-json' | 'absent';

/**
 * Text <-> token ids for one model. Structurally a superset of what the data
 * package needs (`encode`, `eosId`, `vocabSize`), so the data package never
 * imports models.
 *
 * `encode` treats its input as plain text: the literal string "<|endoftext|>"
 * is encoded as characters, never as `eosId`, so training data cannot inject
 * document boundaries. Append `eosId` yourself.
 *
 * `decode` never throws: `eosId` renders as nothing, ids the tokenizer does not
 * know render as U+FFFD, and invalid UTF-8 (a generation cut mid-character)
 * becomes U+FFFD, so a sampled sequence can always be shown.
 */
export interface Tokenizer {
  readonly kind: TokenizerKind;
  readonly vocabSize: number;
  readonly eosId: number;
  /** Put before every document when set (tokenizer_config.json's add_bos_token). */
  readonly bosId?: number;
  /** The model's chat template, when its folder has one. */
  readonly chat?: ChatFormat;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}

/** One turn of a conversation, as chat templates expect it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/**
 * A model's chat template with the tokenizer that reads its output.
 * Structurally the data package's `ChatFormat`, so data never imports models.
 */
export interface ChatFormat {
  /** The template's text for `messages`; with `addGenerationPrompt`, up to where the assistant speaks. */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
  /** Ids of rendered text: the control tokens the template writes become their ids. */
  encodeRendered(text: string): number[];
  /** Whether an id is a control token; an assistant turn is trained up to the first one. */
  isControlToken(id: number): boolean;
  /** The control tokens' text; message content holding one is refused. */
  readonly controlTokens: readonly string[];
}

/** A generation prompt's ids: BOS first when the tokenizer adds one, as training data has it. */
export function encodePrompt(
  tokenizer: Pick<Tokenizer, 'encode'> & { readonly bosId?: number },
  text: string,
): number[] {
  const ids = tokenizer.encode(text);
  return tokenizer.bosId === undefined ? ids : [tokenizer.bosId, ...ids];
}
