import { bytesToSymbol } from './byte-level.js';
import { Gpt2BpeTokenizer } from './gpt2-bpe.js';
import { utf8Bytes } from './utf8.js';

export interface Gpt2VocabAndMerges {
  /** vocab.json: byte-alphabet symbol -> id, including "<|endoftext|>". */
  vocab: Record<string, number>;
  /** merges.txt in priority order. */
  merges: [string, string][];
}

const GPT2_EOS_ID = 50256;

/**
 * GPT-2's vocab.json and merges.txt, rebuilt from gpt-tokenizer's bundled
 * r50k_base ranks, for checkpoints shipped without them (or to write them
 * out). r50k ranks equal GPT-2 ids and merge i creates token 256 + i, so
 * token r's merge is the last step of BPE on r's own bytes using only ranks
 * below r (the method of transformers' TikTokenConverter).
 *
 * Lazy import: the 50k-entry table is a large module, and `import
 * '@lorafleet/models'` should not pay for it.
 */
export async function r50kVocabAndMerges(): Promise<Gpt2VocabAndMerges> {
  const { default: ranks } = await import('gpt-tokenizer/bpeRanks/r50k_base');
  if (ranks.length !== GPT2_EOS_ID) {
    throw new Error(
      `gpt-tokenizer r50k_base has ${ranks.length} ranks; GPT-2 has ${GPT2_EOS_ID} before <|endoftext|>`,
    );
  }
  // A rank holds a string when its bytes are valid UTF-8, else the raw bytes.
  const symbols = ranks.map((token) =>
    bytesToSymbol(typeof token === 'string' ? utf8Bytes(token) : Uint8Array.from(token)),
  );
  const rankOf = new Map(symbols.map((symbol, rank) => [symbol, rank]));
  if (rankOf.size !== symbols.length) throw new Error('gpt-tokenizer r50k_base: duplicate tokens');
  const vocab: Record<string, number> = Object.fromEntries(rankOf);
  vocab['<|endoftext|>'] = GPT2_EOS_ID;
  const merges: [string, string][] = [];
  for (let rank = 256; rank < symbols.length; rank++) {
    const [left, right, ...rest] = splitBelowRank(
      Array.from(symbols[rank] as string),
      rankOf,
      rank,
    );
    if (left === undefined || right === undefined || rest.length > 0) {
      throw new Error(`gpt-tokenizer r50k_base: rank ${rank} is not a merge of two lower ranks`);
    }
    merges.push([left, right]);
  }
  return { vocab, merges };
}

/**
 * GPT-2's tokenizer (50257 ids, EOS 50256) for GPT-2 checkpoints whose folder
 * lacks vocab.json/merges.txt. It runs our BPE rather than gpt-tokenizer's
 * encode so that a checkpoint tokenizes the same with or without those
 * files; gpt-tokenizer splits on JavaScript's `\s`, which differs from
 * GPT-2's (see GPT2_SPLIT_PATTERN).
 */
export async function r50kTokenizer(): Promise<Gpt2BpeTokenizer> {
  const { vocab, merges } = await r50kVocabAndMerges();
  return Gpt2BpeTokenizer.fromVocab(vocab, merges);
}

/** tiktoken-style BPE: merge the lowest-ranked adjacent pair below maxRank, one at a time. */
function splitBelowRank(parts: string[], rankOf: Map<string, number>, maxRank: number): string[] {
  for (;;) {
    let best = maxRank;
    let at = -1;
    for (let i = 0; i + 1 < parts.length; i++) {
      const rank = rankOf.get((parts[i] as string) + (parts[i + 1] as string));
      if (rank !== undefined && rank < best) {
        best = rank;
        at = i;
      }
    }
    if (at < 0) return parts;
    parts.splice(at, 2, (parts[at] as string) + (parts[at + 1] as string));
  }
}
