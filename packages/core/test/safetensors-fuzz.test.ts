// Fuzzing the safetensors reader (checkpoints, adapters and base models come
// from disk): random bytes, every truncation, every bit flip of the header,
// header-level mutations and huge claimed sizes must give a SafetensorsError
// naming the file, quickly and without allocating what the header claims;
// and whatever is accepted must be a well-formed file that round-trips. A
// seeded generator makes each run the same; a failure names its case.
import { describe, expect, it } from 'vitest';
import {
  MAX_HEADER_BYTES,
  Rng,
  SafetensorsError,
  type SafetensorsFile,
  type TensorEntry,
  float32Entry,
  parseSafetensors,
  serializeSafetensors,
  toFloat32,
} from '../src/index.js';

const SOURCE = 'fuzz.safetensors';
const SEED = 20261126;
const SIZES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
};

const bytesOf = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 37 + seed) & 0xff);
const entry = (dtype: TensorEntry['dtype'], shape: number[]): TensorEntry => ({
  dtype,
  shape,
  bytes: bytesOf(
    shape.reduce((a, b) => a * b, SIZES[dtype]!),
    shape.length,
  ),
});

const valid = serializeSafetensors(
  new Map<string, TensorEntry>([
    [
      'base_model.model.h.0.attn.c_attn.lora_A.weight',
      float32Entry(new Float32Array(6).fill(0.5), [2, 3]),
    ],
    ['h.0.half', entry('F16', [4])],
    ['h.0.brain', entry('BF16', [1, 2])],
    ['ids', entry('I64', [1])],
    ['mask', entry('BOOL', [3])],
    ['empty', entry('U8', [0])],
  ]),
  { format: 'pt', step: '7' },
);
const headerEnd = 8 + Number(new DataView(valid.buffer).getBigUint64(0, true));

/**
 * Parses `bytes`: a SafetensorsError naming the file, or a file whose tensors
 * are views of the input (nothing allocated for them) of exactly the size
 * their dtype and shape call for, and that serializes back to the same file.
 */
function parseSafely(bytes: Uint8Array, what: string): SafetensorsFile | 'refused' {
  const started = performance.now();
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes, SOURCE);
  } catch (err) {
    if (err instanceof SafetensorsError && err.message.startsWith(`${SOURCE}: `)) return 'refused';
    throw new Error(`${what}: threw ${String(err)}, not a SafetensorsError naming the file`);
  }
  const ms = performance.now() - started;
  if (ms > 200) throw new Error(`${what}: took ${ms.toFixed(0)} ms`);
  for (const [name, e] of file.tensors) {
    const size = e.shape.reduce((a, b) => a * b, SIZES[e.dtype]!);
    if (e.bytes.byteLength !== size || e.bytes.buffer !== bytes.buffer)
      throw new Error(`${what}: tensor "${name}" is not a ${size}-byte view of the file`);
    if (['F32', 'F16', 'BF16', 'F64'].includes(e.dtype)) toFloat32(e, name, SOURCE);
  }
  // What was read is what the header says, entry for entry (JSON.parse's own reading of it).
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length))) as Record<
    string,
    { dtype: string; shape: number[] }
  >;
  const { __metadata__: meta = {}, ...entries } = header;
  const read = JSON.stringify([
    Object.entries(file.metadata).sort(),
    [...file.tensors].map(([n, e]) => [n, e.dtype, e.shape]).sort(),
  ]);
  const said = JSON.stringify([
    Object.entries(meta).sort(),
    Object.entries(entries)
      .map(([n, e]) => [n, e.dtype, e.shape])
      .sort(),
  ]);
  if (read !== said) throw new Error(`${what}: read ${read}, but the header says ${said}`);
  // The writer refuses the empty name, which readers (as the reference one) accept.
  if (file.tensors.has('')) return file;
  const again = parseSafetensors(serializeSafetensors(file.tensors, file.metadata), SOURCE);
  const same = (x: SafetensorsFile) =>
    JSON.stringify([
      [...x.tensors].map(([n, e]) => [n, e.dtype, e.shape, Array.from(e.bytes)]).sort(),
      Object.entries(x.metadata).sort(),
    ]);
  if (same(again) !== same(file)) throw new Error(`${what}: does not round-trip`);
  return file;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)]!;

/** A file with this header text (its length prefix made right) and data. */
function withHeader(header: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  2,
  3,
  7,
  0.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  1e20,
  -(2 ** 40),
];
const VALUES: unknown[] = [
  null,
  true,
  '',
  'F32',
  'F16',
  'X99',
  [],
  {},
  [0],
  [-1],
  [1.5],
  ['2'],
  [[2]],
  [2 ** 40, 2 ** 40],
  [2 ** 26, 2 ** 26, 2 ** 26],
  [0, 2 ** 53],
  [5, 3],
  [0, 1e300],
];
const NAMES = ['a', '', '__metadata__', '__proto__', 'constructor', 'x.y', 'é', '\u0000'];

/** One random change to the header's JSON: a field, an entry, the metadata or a name. */
function mutateHeader(rng: Rng, header: Record<string, Record<string, unknown>>): string {
  const names = Object.keys(header);
  const name = pick(rng, names);
  const current = header[name];
  const target: Record<string, unknown> =
    typeof current === 'object' && current !== null && !Array.isArray(current) ? current : {};
  header[name] = target;
  const r = rng.uniform();
  if (r < 0.45) {
    const field = pick(rng, ['dtype', 'shape', 'data_offsets', 'extra', ...Object.keys(target)]);
    const value =
      rng.uniform() < 0.3
        ? pick(rng, NUMBERS)
        : rng.uniform() < 0.5
          ? pick(rng, VALUES)
          : undefined;
    if (value === undefined && rng.uniform() < 0.5) delete target[field];
    else if (Array.isArray(target[field]) && rng.uniform() < 0.7) {
      const arr = [...(target[field] as unknown[])];
      arr[Math.floor(rng.uniform() * (arr.length + 1))] = pick(rng, NUMBERS);
      target[field] = arr;
    } else target[field] = value ?? pick(rng, VALUES);
  } else if (r < 0.6) header[name] = pick(rng, VALUES) as Record<string, unknown>;
  else if (r < 0.75)
    header[pick(rng, NAMES)] =
      rng.uniform() < 0.5 ? { ...target } : (pick(rng, VALUES) as Record<string, unknown>);
  else if (r < 0.8) delete header[name];
  else if (r < 0.9) {
    const meta: Record<string, unknown> = {};
    for (const k of NAMES) if (rng.uniform() < 0.4) meta[k] = rng.uniform() < 0.9 ? k : 1;
    header.__metadata__ = meta;
  } else {
    // A key twice in the text, which JSON.parse would silently collapse.
    const text = JSON.stringify(header);
    return `{${JSON.stringify(name)}:${JSON.stringify(target)},${text.slice(1)}`;
  }
  return JSON.stringify(header);
}

describe('parseSafetensors under fuzzing', () => {
  it('reads metadata and shapes exactly as the header writes them (found by fuzzing)', () => {
    // Metadata key "__proto__" was dropped (assigned through the prototype setter),
    // and a dimension written -0 read as -0.
    const header = `{"__metadata__":{"__proto__":"x","a":"b"},"t":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}`;
    const file = parseSafetensors(withHeader(header, new Uint8Array(0)), SOURCE);
    expect(Object.entries(file.metadata)).toEqual([
      ['__proto__', 'x'],
      ['a', 'b'],
    ]);
    expect(Object.is(file.tensors.get('t')!.shape[0], 0)).toBe(true);
    expect(parseSafely(withHeader(header, new Uint8Array(0)), 'metadata')).not.toBe('refused');
  });

  it('reads the intact file', () => {
    const file = parseSafely(valid, 'intact');
    expect(file).not.toBe('refused');
    expect((file as SafetensorsFile).tensors.size).toBe(6);
  });

  it('refuses random bytes, with or without a plausible length prefix', () => {
    const rng = new Rng(SEED);
    for (let i = 0; i < 3000; i++) {
      const bytes = Uint8Array.from({ length: Math.floor(rng.uniform() * 300) }, () =>
        Math.floor(rng.uniform() * 256),
      );
      if (bytes.length >= 9 && i % 2 === 0) {
        new DataView(bytes.buffer).setBigUint64(
          0,
          BigInt(Math.floor(rng.uniform() * (bytes.length - 8))),
          true,
        );
        bytes[8] = 0x7b;
      }
      const what = `random case ${i} (seed ${SEED})`;
      expect(parseSafely(bytes, what), what).toBe('refused');
    }
  });

  it('refuses every truncation of a valid file', () => {
    for (let end = 0; end < valid.length; end++)
      expect(parseSafely(valid.slice(0, end), `cut at ${end}`)).toBe('refused');
  });

  it('answers every single-bit flip of the length prefix and header', () => {
    let accepted = 0;
    for (let at = 0; at < headerEnd; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Uint8Array.from(valid);
        flipped[at]! ^= 1 << bit;
        if (parseSafely(flipped, `bit ${bit} of byte ${at}`) !== 'refused') accepted++;
      }
    }
    // Flips in the padding, names and metadata values can leave a valid file.
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(headerEnd * 8);
  });

  it('answers header mutations: dtypes, shapes, offsets, entries, names, duplicates', () => {
    const rng = new Rng(SEED);
    const text = new TextDecoder().decode(valid.subarray(8, headerEnd)).trimEnd();
    const data = valid.subarray(headerEnd);
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      let header = JSON.parse(text) as Record<string, Record<string, unknown>>;
      let json = '';
      for (let k = 1 + Math.floor(rng.uniform() * 3); k > 0; k--) {
        json = mutateHeader(rng, header);
        header = JSON.parse(json) as typeof header;
      }
      const cut = rng.uniform() < 0.2 ? Math.floor(rng.uniform() * data.length) : data.length;
      if (
        parseSafely(
          withHeader(json, data.subarray(0, cut)),
          `mutation ${i} (seed ${SEED}): ${json}`,
        ) !== 'refused'
      )
        accepted++;
    }
    expect(accepted).toBeGreaterThan(30);
  });

  it('refuses huge claimed sizes at once, allocating nothing for them', () => {
    const prefix = (n: bigint, rest: Uint8Array) => {
      const out = Uint8Array.from(rest);
      new DataView(out.buffer).setBigUint64(0, n, true);
      return out;
    };
    for (const n of [
      2n ** 64n - 1n,
      2n ** 32n,
      BigInt(MAX_HEADER_BYTES) + 1n,
      BigInt(valid.length),
    ])
      expect(() => parseSafetensors(prefix(n, valid), SOURCE)).toThrow(SafetensorsError);
    const claims = [
      { t: { dtype: 'F32', shape: [2 ** 26, 2 ** 26], data_offsets: [0, 2 ** 52] } },
      { t: { dtype: 'F64', shape: [2 ** 50], data_offsets: [0, 2 ** 53] } },
      { t: { dtype: 'U8', shape: [1e15], data_offsets: [0, 1e15] } },
    ];
    for (const claim of claims) {
      const started = performance.now();
      expect(() =>
        parseSafetensors(withHeader(JSON.stringify(claim), new Uint8Array(8)), SOURCE),
      ).toThrow(/fuzz\.safetensors: tensor "t"/);
      expect(performance.now() - started).toBeLessThan(50);
    }
  });
});
