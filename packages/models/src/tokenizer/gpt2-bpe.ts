import { readMergesTxt, readVocabJson } from './hf-files.js';
import { BYTE_TO_UNICODE, GPT2_SPLIT_PATTERN, symbolToBytes } from './byte-level.js';
import type { Tokenizer } from './types.js';
import { decodeTokenBytes, utf8Bytes } from './utf8.js';

export interface Gpt2BpeOptions {
  /** End-of-text id; required when the vocabulary has no "<|endoftext|>" entry. */
  eosId?: number;
}

/** Where construction errors point: a file path or "vocab"/"merges[i]" for in-memory input. */
interface Sources {
  vocab: string;
  merge(index: number): string;
}

const EOS_TOKEN = '<|endoftext|>';
// Pieces repeat heavily (" the", ","); bounded so a long corpus cannot grow it without end.
const CACHE_LIMIT = 50_000;

/**
 * GPT-2's byte-level BPE from a Hugging Face vocab.json + merges.txt pair:
 * split text with GPT-2's pattern, spell each piece's UTF-8 bytes in the byte
 * alphabet, then repeatedly apply the highest-priority merge present.
 *
 * Construction checks that every byte and every merge result is in the
 * vocabulary, so encode can never meet an unknown symbol.
 */
export class Gpt2BpeTokenizer implements Tokenizer {
  readonly kind = 'gpt2-bpe' as const;
  readonly vocabSize: number;
  readonly eosId: number;
  private readonly symbolIds = new Map<string, number>();
  /** ranks.get(left).get(right): nested to avoid building a pair key per lookup. */
  private readonly ranks = new Map<string, Map<string, number>>();
  private readonly idBytes: (Uint8Array | undefined)[] = [];
  private readonly cache = new Map<string, number[]>();

  static async fromFiles(
    vocabJsonPath: string,
    mergesTxtPath: string,
    options: Gpt2BpeOptions = {},
  ): Promise<Gpt2BpeTokenizer> {
    const [vocab, merges] = await Promise.all([
      readVocabJson(vocabJsonPath),
      readMergesTxt(mergesTxtPath),
    ]);
    return new Gpt2BpeTokenizer(vocab, merges.pairs, options, {
      vocab: vocabJsonPath,
      merge: (i) => `${mergesTxtPath} line ${merges.lines[i]}`,
    });
  }

  static fromVocab(
    vocab: Record<string, number>,
    merges: [string, string][],
    options: Gpt2BpeOptions = {},
  ): Gpt2BpeTokenizer {
    return new Gpt2BpeTokenizer(vocab, merges, options, {
      vocab: 'vocab',
      merge: (i) => `merges[${i}]`,
    });
  }

  private constructor(
    vocab: Record<string, number>,
    merges: [string, string][],
    options: Gpt2BpeOptions,
    sources: Sources,
  ) {
    const symbolOfId = new Map<number, string>();
    for (const [symbol, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || id < 0) {
        throw new Error(
          `${sources.vocab}: token ${JSON.stringify(symbol)} has id ${JSON.stringify(id)}; ids must be non-negative integers`,
        );
      }
      const other = symbolOfId.get(id);
      if (other !== undefined) {
        throw new Error(
          `${sources.vocab}: tokens ${JSON.stringify(other)} and ${JSON.stringify(symbol)} share id ${id}`,
        );
      }
      symbolOfId.set(id, symbol);
      this.symbolIds.set(symbol, id);
      // Added tokens spelled outside the byte alphabet decode as their literal text.
      this.idBytes[id] = symbolToBytes(symbol) ?? utf8Bytes(symbol);
    }
    BYTE_TO_UNICODE.forEach((symbol, byte) => {
      if (!this.symbolIds.has(symbol)) {
        throw new Error(
          `${sources.vocab}: missing the symbol ${JSON.stringify(symbol)} for byte 0x${byte.toString(16)}; a byte-level BPE vocabulary needs all 256 byte symbols`,
        );
      }
    });
    merges.forEach(([left, right], rank) => {
      for (const symbol of [left, right, left + right]) {
        if (!this.symbolIds.has(symbol)) {
          throw new Error(
            `${sources.merge(rank)}: merge "${left} ${right}" uses ${JSON.stringify(symbol)}, which is not in ${sources.vocab}; vocab and merges must come from the same tokenizer`,
          );
        }
      }
      let byRight = this.ranks.get(left);
      if (!byRight) this.ranks.set(left, (byRight = new Map()));
      byRight.set(right, rank);
    });

    const eosId = options.eosId ?? this.symbolIds.get(EOS_TOKEN);
    if (eosId === undefined) {
      throw new Error(
        `${sources.vocab}: no ${JSON.stringify(EOS_TOKEN)} token; pass { eosId } to say which id ends a document`,
      );
    }
    if (!Number.isInteger(eosId) || eosId < 0) {
      throw new Error(`eosId must be a non-negative integer, got ${eosId}`);
    }
    this.eosId = eosId;
    this.vocabSize = Math.max(this.idBytes.length, eosId + 1);
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    for (const [piece] of text.matchAll(GPT2_SPLIT_PATTERN)) {
      for (const id of this.encodePiece(piece)) ids.push(id);
    }
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    return decodeTokenBytes(ids, (id) => (id === this.eosId ? 'eos' : this.idBytes[id]));
  }

  private encodePiece(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    const symbols = this.merge(Array.from(utf8Bytes(piece), (b) => BYTE_TO_UNICODE[b] as string));
    const ids = symbols.map((symbol) => {
      const id = this.symbolIds.get(symbol);
      if (id === undefined) throw new Error(`internal: BPE produced unknown symbol ${symbol}`);
      return id;
    });
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }

  /**
   * The reference algorithm (OpenAI encoder.py, HF GPT2Tokenizer.bpe): find
   * the adjacent pair with the lowest merge rank, merge every occurrence of it
   * left to right, repeat until no pair has a rank.
   */
  private merge(symbols: string[]): string[] {
    while (symbols.length > 1) {
      let bestRank = Infinity;
      let bestAt = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(symbols[i] as string)?.get(symbols[i + 1] as string);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      const left = symbols[bestAt] as string;
      const right = symbols[bestAt + 1] as string;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          merged.push(left + right);
          i++;
        } else {
          merged.push(symbols[i] as string);
        }
      }
      symbols = merged;
    }
    return symbols;
  }
}
