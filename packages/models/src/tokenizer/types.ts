/** Which scheme turns text into ids; recorded so callers can check a checkpoint's pairing. */
export type TokenizerKind = 'bytes' | 'gpt2-bpe';

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
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}
