// The trainer state a joining worker receives: bit-exact round trip through
// TrainerState parts, and bytes from the network that are not a valid state
// (random, truncated, flipped, for another model) refused with the Error
// that names what is wrong.
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
  return {
    values: fill(),
    optimizer: { step, buffers: { exp_avg: fill(), exp_avg_sq: fill().map(Math.abs) } },
  };
}

/** AdamW's buffers for `size` parameters (TrainingStep.stateSizes()). */
const adamw = (size: number) => [
  { name: 'exp_avg', length: size },
  { name: 'exp_avg_sq', length: size },
];

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe('trainer state transfer', () => {
  it('round-trips bit for bit through several parts, NaN payloads and -0 included', () => {
    // Over 512 KiB, so it travels in more than one part.
    const size = Math.ceil((1.5 * STATE_PART_BYTES) / 12);
    const state = randomState(size, 41);
    state.values[0] = -0;
    state.values[1] = NaN;
    state.optimizer.buffers.exp_avg![2] = Infinity;
    const parts = stateParts(41, encodeTrainState(state));
    expect(parts.length).toBe(2);
    const assembler = new StateAssembler();
    let done: { step: number; bytes: Uint8Array } | undefined;
    // Out of order, as nothing guarantees otherwise.
    for (const p of [...parts].reverse()) done = assembler.add(p) ?? done;
    expect(done!.step).toBe(41);
    const back = decodeTrainState(done!.bytes, size, adamw(size));
    expect(back.optimizer.step).toBe(41);
    expect(bits(back.values)).toEqual(bits(state.values));
    for (const name of ['exp_avg', 'exp_avg_sq'])
      expect(bits(back.optimizer.buffers[name]!)).toEqual(bits(state.optimizer.buffers[name]!));
  });

  it("carries any optimizer's buffers, and refuses another optimizer's", () => {
    // Adafactor's factored moments: buffers of their own lengths (and an odd header length).
    const rng = new Rng(5);
    const fill = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const buffers = { exp_avg_sq_row: fill(3), exp_avg_sq_col: fill(7), exp_avg_sq: fill(2) };
    const state: TrainState = { values: fill(23), optimizer: { step: 9, buffers } };
    const sizes = Object.entries(buffers).map(([name, b]) => ({ name, length: b.length }));
    const back = decodeTrainState(encodeTrainState(state), 23, sizes);
    expect(back.optimizer.step).toBe(9);
    expect(bits(back.values)).toEqual(bits(state.values));
    for (const [name, b] of Object.entries(buffers))
      expect(bits(back.optimizer.buffers[name]!)).toEqual(bits(b));
    expect(() => decodeTrainState(encodeTrainState(state), 23, adamw(23))).toThrow(
      /holds optimizer state \[\["exp_avg_sq_row",3\].*this replica keeps \[\["exp_avg",23\]/,
    );
  });

  it('refuses a state for another model size, a bad header, or truncated bytes', () => {
    const bytes = encodeTrainState(randomState(10, 3));
    expect(() => decodeTrainState(bytes, 11, adamw(11))).toThrow(
      /holds 10 parameters .* trains 11/,
    );
    expect(() => decodeTrainState(bytes.subarray(0, bytes.length - 1), 10, adamw(10))).toThrow(
      /holds 10 parameters/,
    );
    const wrong = bytes.slice();
    wrong[0] = 0;
    expect(() => decodeTrainState(wrong, 10, adamw(10))).toThrow(/not a LoRA Fleet trainer state/);
    const version = bytes.slice();
    version[4] = 9;
    expect(() => decodeTrainState(version, 10, adamw(10))).toThrow(/version 9/);
    const step = bytes.slice();
    new DataView(step.buffer).setFloat64(12, -1, true);
    expect(() => decodeTrainState(step, 10, adamw(10))).toThrow(/bad step/);
  });

  it('detects a part altered on the way (sha256 of the whole)', () => {
    const parts = stateParts(5, encodeTrainState(randomState(100, 5)));
    const altered = { ...parts[0]!, data: parts[0]!.data.slice() };
    altered.data[30] = altered.data[30]! ^ 1;
    expect(() => new StateAssembler().add(altered)).toThrow(/sha256 mismatch/);
  });

  it('refuses random bytes, naming what is wrong, at every check', () => {
    const rng = new Rng(7);
    const REFUSALS = {
      magic: /^trainer state: not a LoRA Fleet trainer state$/,
      version: /^trainer state: version \d+, expected 2$/,
      size: /^trainer state: holds \d+ parameters in \d+ bytes; this replica trains 4$/,
      optimizer: /^trainer state: holds optimizer state .*; this replica keeps /,
      step: /^trainer state: bad step /,
    };
    // AdamW's header for 4 parameters, padded to 4 bytes.
    const json = JSON.stringify(adamw(4).map((b) => [b.name, b.length]));
    const header = new TextEncoder().encode(json.padEnd(Math.ceil(json.length / 4) * 4, ' '));
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      // Every 6th of the right length for 4 parameters, so the later checks are reached too.
      const right = 24 + header.length + 12 * 4;
      const length = i % 6 === 0 ? right : Math.floor(rng.uniform() * 200);
      const bytes = Uint8Array.from({ length }, () => Math.floor(rng.uniform() * 256));
      const view = new DataView(bytes.buffer);
      // Sometimes a valid magic, version, size and header, so the later checks are reached.
      if (i % 2 === 0 && length >= 24) view.setUint32(0, 0x5354464c, true);
      if (i % 4 === 0 && length >= 24) view.setUint32(4, 2, true);
      if (i % 6 === 0) view.setUint32(8, 4, true);
      if (i % 6 === 0) view.setUint32(20, header.length, true);
      if (i % 24 === 0) bytes.set(header, 24);
      let message = '(no error: garbage accepted as a trainer state)';
      try {
        decodeTrainState(bytes, 4, adamw(4));
      } catch (error) {
        expect(error).toBeInstanceOf(Error);
        message = (error as Error).message;
      }
      const kind = Object.entries(REFUSALS).find(([, re]) => re.test(message))?.[0];
      expect(kind, `case ${i} (${length} bytes): ${message}`).toBeDefined();
      seen.add(kind!);
    }
    expect([...seen].sort()).toEqual(['magic', 'optimizer', 'size', 'step', 'version']);
  });
});
