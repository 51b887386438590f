import type { Tokenizer } from './types.js';
import { decodeTokenBytes, utf8Bytes } from './utf8.js';

const SINGLE_BYTES = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));

/**
 * One token per UTF-8 byte (ids 0..255) plus EOS = 256. The project's own
 * small models use it: no vocabulary file to ship, and any text round-trips.
 */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'bytes' as const;
  readonly vocabSize = 257;
  readonly eosId = 256;

  encode(text: string): number[] {
    return Array.from(utf8Bytes(text));
  }

  decode(ids: ArrayLike<number>): string {
    return decodeTokenBytes(ids, (id) => (id === this.eosId ? 'eos' : SINGLE_BYTES[id]));
  }
}
