// Property-based: whatever bytes arrive, the decoders answer with a result and
// never throw. Bounded runs keep this file well under two seconds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeChunk, decodeControl, encodeChunk, encodeControl } from '../src/index.js';
import { controls, sampleChunk } from './samples.js';

const RUNS = 1500;

const validFrames = [
  ...controls.map((m) => encodeControl(m)),
  encodeChunk(sampleChunk()),
  encodeChunk(sampleChunk({ dtype: 'f16', payload: new Uint8Array(64) })),
];

/** A valid frame with some bytes overwritten, some cut off, or some inserted. */
const mutatedFrame = fc
  .record({
    frame: fc.constantFrom(...validFrames),
    writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
    cut: fc.option(fc.nat()),
    insert: fc.option(fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 16 }))),
  })
  .map(({ frame, writes, cut, insert }) => {
    let bytes = Uint8Array.from(frame);
    for (const [at, value] of writes) bytes[at % bytes.length] = value;
    if (insert) {
      const at = insert[0] % (bytes.length + 1);
      bytes = new Uint8Array([...bytes.subarray(0, at), ...insert[1], ...bytes.subarray(at)]);
    }
    return cut === null ? bytes : bytes.subarray(0, cut % (bytes.length + 1));
  });

function neverThrows(bytes: Uint8Array): boolean {
  const control = decodeControl(bytes);
  const chunk = decodeChunk(bytes);
  const lenient = decodeChunk(bytes, {}, { requireChecksum: false });
  return [control, chunk, lenient].every(
    (r) => typeof r.ok === 'boolean' && (r.ok || r.error.message !== ''),
  );
}

describe('decoders under fuzzing', () => {
  it('answer random bytes with a result, never a throw', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), neverThrows), { numRuns: RUNS });
  });

  it('answer mutated valid frames with a result, never a throw', () => {
    fc.assert(fc.property(mutatedFrame, neverThrows), { numRuns: RUNS });
  });

  it('accept a mutated chunk only when its checksum still holds (i.e. unchanged)', () => {
    fc.assert(
      fc.property(mutatedFrame, (bytes) => {
        const result = decodeChunk(bytes);
        if (!result.ok) return true;
        return validFrames.some(
          (f) => f.length === bytes.length && f.every((b, i) => b === bytes[i]),
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('survive inputs that are not bytes at all', () => {
    for (const junk of [null, undefined, 'text', 42, {}, [1, 2]]) {
      expect(decodeControl(junk as unknown as Uint8Array).ok).toBe(false);
      expect(decodeChunk(junk as unknown as Uint8Array).ok).toBe(false);
    }
  });
});
