// The trainer state a joining worker receives: bit-exact round trip through
// TrainerState parts, and bytes from the network that are not a valid state
// (random, truncated, flipped, for another model) refused with an Error.
import { describe, expect, it } from 'vitest';
import { Rng } from '@lorafleet/core';
import { STATE_PART_BYTES } from '@lorafleet/protocol';
import {
  StateAssembler,
  decodeTrainState,
  encodeTrainState,
  stateParts,
} from '../src/state-transfer.js';
import type { TrainState } from '../src/step.js';

function randomState(size: number, step: number, seed = 1): TrainState {
  const rng = new Rng(seed);
  const fill = () => Float32Array.from({ length: size }, () => rng.normal());
  return { values: fill(), optimizer: { step, m: fill(), v: fill().map(Math.abs) } };
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe('trainer state transfer', () => {
  it('round-trips bit for bit through several parts, NaN payloads and -0 included', () => {
    // Over 512 KiB, so it travels in more than one part.
    const size = Math.ceil((1.5 * STATE_PART_BYTES) / 12);
    const state = randomState(size, 41);
    state.values[0] = -0;
    state.values[1] = NaN;
    state.optimizer.m[2] = Infinity;
    const parts = stateParts(41, encodeTrainState(state));
    expect(parts.length).toBe(2);
    const assembler = new StateAssembler();
    let done: { step: number; bytes: Uint8Array } | undefined;
    // Out of order, as nothing guarantees otherwise.
    for (const p of [...parts].reverse()) done = assembler.add(p) ?? done;
    expect(done!.step).toBe(41);
    const back = decodeTrainState(done!.bytes, size);
    expect(back.optimizer.step).toBe(41);
    expect(bits(back.values)).toEqual(bits(state.values));
    expect(bits(back.optimizer.m)).toEqual(bits(state.optimizer.m));
    expect(bits(back.optimizer.v)).toEqual(bits(state.optimizer.v));
  });

  it('refuses a state for another model size, a bad header, or truncated bytes', () => {
    const bytes = encodeTrainState(randomState(10, 3));
    expect(() => decodeTrainState(bytes, 11)).toThrow(/holds 10 parameters .* trains 11/);
    expect(() => decodeTrainState(bytes.subarray(0, bytes.length - 1), 10)).toThrow(
      /holds 10 parameters/,
    );
    const wrong = bytes.slice();
    wrong[0] = 0;
    expect(() => decodeTrainState(wrong, 10)).toThrow(/not a LoRA Fleet trainer state/);
    const version = bytes.slice();
    version[4] = 9;
    expect(() => decodeTrainState(version, 10)).toThrow(/version 9/);
    const step = bytes.slice();
    new DataView(step.buffer).setFloat64(12, -1, true);
    expect(() => decodeTrainState(step, 10)).toThrow(/bad step/);
  });

  it('detects a part altered on the way (sha256 of the whole)', () => {
    const parts = stateParts(5, encodeTrainState(randomState(100, 5)));
    const altered = { ...parts[0]!, data: parts[0]!.data.slice() };
    altered.data[30] = altered.data[30]! ^ 1;
    expect(() => new StateAssembler().add(altered)).toThrow(/sha256 mismatch/);
  });

  it('never crashes on random bytes: a state or an Error', () => {
    const rng = new Rng(7);
    for (let i = 0; i < 500; i++) {
      const length = Math.floor(rng.uniform() * 200);
      const bytes = Uint8Array.from({ length }, () => Math.floor(rng.uniform() * 256));
      // Sometimes a valid header, so the size checks are reached too.
      if (i % 3 === 0 && length >= 20) new DataView(bytes.buffer).setUint32(0, 0x5354464c, true);
      try {
        decodeTrainState(bytes, 4);
      } catch (error) {
        expect(error).toBeInstanceOf(Error);
      }
    }
  });
});
