// tokenizer.json's "model" of type BPE: pieces (pre-tokenized words) to ids.
// Follows Hugging Face tokenizers' BPE (Rust): characters, byte fallback
// ("<0xE2>") or the unknown token for characters outside the vocabulary, then
// merges by priority (lowest rank first, leftmost on ties), optionally
// skipped when the whole word is a token ("ignore_merges", Llama 3).
import {
  type JsonObject,
  type JsonPlace,
  asArray,
  asObject,
  asString,
  at,
  fail,
  optionalBoolean,
} from './json.js';

// Pieces repeat heavily; bounded so a long corpus cannot grow it without end.
const CACHE_LIMIT = 50_000;
// Pair key left * PAIR_BASE + right stays below 2^53 for any id < 2^26.
const PAIR_BASE = 2 ** 26;

export interface BpeVocabulary {
  /** Token string -> id, from model.vocab. */
  readonly tokenIds: ReadonlyMap<string, number>;
}

export class BpeModel implements BpeVocabulary {
  readonly tokenIds: Map<string, number>;
  /** pair key -> [rank, merged id] */
  private readonly merges = new Map<number, [number, number]>();
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  private readonly unkId: number | undefined;
  private readonly fuseUnk: boolean;
  private readonly byteIds: (number | undefined)[] = [];
  private readonly cache = new Map<string, number[]>();

  constructor(o: JsonObject, place: JsonPlace) {
    for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      const v = o[key];
      if (v !== undefined && v !== null && v !== '') {
        fail(
          at(place, key),
          `BPE with ${key} ${JSON.stringify(v)} is not supported (word-piece style BPE)`,
        );
      }
    }
    if (o['dropout'] !== undefined && o['dropout'] !== null && o['dropout'] !== 0) {
      fail(
        at(place, 'dropout'),
        'BPE dropout is a training-time augmentation; set it to null to tokenize',
      );
    }
    this.tokenIds = readVocab(o['vocab'], at(place, 'vocab'));
    this.byteFallback = optionalBoolean(o['byte_fallback'], at(place, 'byte_fallback'), false);
    this.ignoreMerges = optionalBoolean(o['ignore_merges'], at(place, 'ignore_merges'), false);
    this.fuseUnk = optionalBoolean(o['fuse_unk'], at(place, 'fuse_unk'), false);
    const unk = o['unk_token'];
    if (unk !== undefined && unk !== null) {
      this.unkId = this.tokenIds.get(asString(unk, at(place, 'unk_token')));
      if (this.unkId === undefined)
        fail(at(place, 'unk_token'), `${JSON.stringify(unk)} is not in model.vocab`);
    }
    for (let b = 0; b < 256; b++) {
      this.byteIds.push(this.tokenIds.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
    }
    this.readMerges(o['merges'], at(place, 'merges'));
  }

  /** Ids of one pre-tokenized piece. */
  encodeWord(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const whole = this.ignoreMerges ? this.tokenIds.get(word) : undefined;
    const ids = whole !== undefined ? [whole] : this.merge(this.initialSymbols(word));
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }

  private readMerges(value: unknown, place: JsonPlace): void {
    // 280k merges in Llama 3: build error places only on failure.
    asArray(value, place).forEach((entry, rank) => {
      const pair = mergePair(entry);
      if (!pair) {
        fail(
          at(place, rank),
          `expected "left right" or ["left", "right"], found ${JSON.stringify(entry)}`,
        );
      }
      const [left, right] = pair;
      const l = this.tokenIds.get(left);
      const r = this.tokenIds.get(right);
      const m = this.tokenIds.get(left + right);
      if (l === undefined || r === undefined || m === undefined) {
        fail(
          at(place, rank),
          `merge ${JSON.stringify([left, right])} uses a token missing from model.vocab; vocab and merges must come from the same tokenizer`,
        );
      }
      const key = l * PAIR_BASE + r;
      // The first (highest-priority) occurrence of a pair wins, as in Rust.
      if (!this.merges.has(key)) this.merges.set(key, [rank, m]);
    });
  }

  /** One symbol per character; unknown ones become bytes or the unknown token. */
  private initialSymbols(word: string): number[] {
    const ids: number[] = [];
    let lastWasUnk = false;
    for (const ch of word) {
      const id = this.tokenIds.get(ch);
      if (id !== undefined) {
        ids.push(id);
        lastWasUnk = false;
        continue;
      }
      if (this.byteFallback) {
        const bytes = Array.from(new TextEncoder().encode(ch), (b) => this.byteIds[b]);
        if (bytes.every((b) => b !== undefined)) {
          ids.push(...(bytes as number[]));
          lastWasUnk = false;
          continue;
        }
      }
      // Without an unknown token Rust drops the character; so do we.
      if (this.unkId === undefined) continue;
      if (!(this.fuseUnk && lastWasUnk)) ids.push(this.unkId);
      lastWasUnk = true;
    }
    return ids;
  }

  /**
   * Rust's `Word::merge_all`: a min-heap of (rank, position) over adjacent
   * pairs in a linked list of symbols; a popped entry whose pair has since
   * changed is stale and skipped. O(n log n) for long words (Llama 2 has no
   * pre-tokenizer, so a whole line is one word).
   */
  private merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    if (n >= POSITION_BASE) {
      throw new RangeError(
        `a piece of ${n} symbols is too long to merge (limit ${POSITION_BASE}); split the text into smaller documents`,
      );
    }
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const alive = new Uint8Array(n).fill(1);
    const heap = new MergeHeap();
    const push = (pos: number): void => {
      const right = next[pos] as number;
      if (right < 0) return;
      const found = this.merges.get((ids[pos] as number) * PAIR_BASE + (ids[right] as number));
      if (found) heap.push(found[0], pos, found[1]);
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.size > 0) {
      const [pos, merged] = heap.pop();
      const right = next[pos] as number;
      if (!alive[pos] || right < 0) continue;
      const current = this.merges.get((ids[pos] as number) * PAIR_BASE + (ids[right] as number));
      if (!current || current[1] !== merged) continue;
      ids[pos] = merged;
      alive[right] = 0;
      const after = next[right] as number;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos] as number;
      if (before >= 0) push(before);
      push(pos);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i] as number) out.push(ids[i] as number);
    return out;
  }
}

function readVocab(value: unknown, place: JsonPlace): Map<string, number> {
  const vocab = asObject(value, place);
  const ids = new Map<string, number>();
  for (const [token, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= PAIR_BASE) {
      fail(
        at(place, token),
        `id must be an integer in [0, ${PAIR_BASE}), found ${JSON.stringify(id)}`,
      );
    }
    ids.set(token, id);
  }
  return ids;
}

/** A merge as "left right" (older files) or ["left", "right"]; undefined when neither. */
function mergePair(entry: unknown): [string, string] | undefined {
  if (Array.isArray(entry)) {
    const [left, right] = entry as unknown[];
    return entry.length === 2 && typeof left === 'string' && typeof right === 'string'
      ? [left, right]
      : undefined;
  }
  if (typeof entry !== 'string') return undefined;
  const space = entry.indexOf(' ');
  if (space <= 0 || space === entry.length - 1 || entry.indexOf(' ', space + 1) >= 0)
    return undefined;
  return [entry.slice(0, space), entry.slice(space + 1)];
}

// A heap key orders by rank, then position: rank * 2^27 + position, exact
// in a double for ranks < 2^26 and words shorter than 2^27 symbols.
const POSITION_BASE = 2 ** 27;

/**
 * Min-heap on (rank, position) holding the merged id beside each key, in two
 * flat arrays: a long word pushes millions of entries, which as small
 * objects would mostly be garbage-collector work.
 */
class MergeHeap {
  private readonly keys: number[] = [];
  private readonly merged: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  push(rank: number, pos: number, mergedId: number): void {
    const { keys, merged } = this;
    const key = rank * POSITION_BASE + pos;
    let i = keys.length;
    keys.push(key);
    merged.push(mergedId);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((keys[parent] as number) <= key) break;
      keys[i] = keys[parent] as number;
      merged[i] = merged[parent] as number;
      i = parent;
    }
    keys[i] = key;
    merged[i] = mergedId;
  }

  /** [position, merged id] of the smallest key; call only when size > 0. */
  pop(): [number, number] {
    const { keys, merged } = this;
    const topKey = keys[0] as number;
    const topMerged = merged[0] as number;
    const lastKey = keys.pop() as number;
    const lastMerged = merged.pop() as number;
    const n = keys.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const child = r < n && (keys[r] as number) < (keys[l] as number) ? r : l;
        if ((keys[child] as number) >= lastKey) break;
        keys[i] = keys[child] as number;
        merged[i] = merged[child] as number;
        i = child;
      }
      keys[i] = lastKey;
      merged[i] = lastMerged;
    }
    return [topKey % POSITION_BASE, topMerged];
  }
}
