import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  float32Entry,
  parseSafetensors,
  readSafetensorsFile,
  serializeSafetensors,
  toFloat32,
  writeSafetensorsFile,
  type TensorEntry,
} from '../src/io/index.js';

const ascii = (s: string) => [...new TextEncoder().encode(s)];
const u64 = (n: number) => [n & 0xff, n >>> 8, 0, 0, 0, 0, 0, 0]; // n < 65536
const f16 = (...xs: number[]) => [...f32ToF16(new Float32Array(xs))];
const bf16 = (...xs: number[]) => [...f32ToBf16(new Float32Array(xs))];
const entry = (dtype: TensorEntry['dtype'], shape: number[], bytes: number[]): TensorEntry => ({
  dtype,
  shape,
  bytes: new Uint8Array(bytes),
});

/** A file with a hand-written header (a string, or an object to stringify) and `dataLength` zero bytes. */
function rawFile(header: string | object, dataLength: number): Uint8Array {
  const json = typeof header === 'string' ? header : JSON.stringify(header);
  return new Uint8Array([
    ...u64(ascii(json).length),
    ...ascii(json),
    ...new Array(dataLength).fill(0),
  ]);
}

describe('F16 conversion', () => {
  it('rounds F32 to the nearest F16, ties to even', () => {
    expect(f16(1, -2, 0.1, 1 / 3, 65504, 65519)).toEqual([
      0x3c00, 0xc000, 0x2e66, 0x3555, 0x7bff, 0x7bff,
    ]);
    // 1 + 2^-11 lies halfway between 0x3c00 and 0x3c01 (odd): goes down; 1 + 3 * 2^-11 goes up.
    expect(f16(1 + 2 ** -11, 1 + 3 * 2 ** -11)).toEqual([0x3c00, 0x3c02]);
  });

  it('overflows to inf and keeps inf, NaN and signed zero', () => {
    expect(f16(65520, 1e6, -1e6, Infinity, -Infinity, 0, -0)).toEqual([
      0x7c00, 0x7c00, 0xfc00, 0x7c00, 0xfc00, 0x0000, 0x8000,
    ]);
    const [nan] = f16(NaN);
    expect(nan! & 0x7c00).toBe(0x7c00);
    expect(nan! & 0x03ff).not.toBe(0);
    // A NaN whose payload lives only in the low bits must not collapse to inf.
    const lowPayloadNan = new Float32Array(new Uint32Array([0x7f800001]).buffer);
    expect(f32ToF16(lowPayloadNan)[0]! & 0x03ff).not.toBe(0);
  });

  it('produces subnormals and rounds across the subnormal boundaries', () => {
    expect(f16(2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 3 * 2 ** -25, 2 ** -26)).toEqual([
      0x0001, 0x0000, 0x0001, 0x0002, 0x0000,
    ]);
    expect(f16(1023 * 2 ** -24, 1023.5 * 2 ** -24, 2 ** -14, -(2 ** -24))).toEqual([
      0x03ff, 0x0400, 0x0400, 0x8001,
    ]);
  });

  it('decodes F16 bit patterns', () => {
    const out = f16ToF32(new Uint16Array([0x3c00, 0x0001, 0x7bff, 0x3555, 0x7c00, 0xfc00, 0x8000]));
    expect([...out]).toEqual([1, 2 ** -24, 65504, 0.333251953125, Infinity, -Infinity, -0]);
    expect(Object.is(out[6], -0)).toBe(true);
    expect([...f16ToF32(new Uint16Array([0x7e00, 0xfc01]))].every(Number.isNaN)).toBe(true);
  });

  it('maps every non-NaN F16 value back to itself through F32', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    const mismatched = all.filter((h, i) =>
      (h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0 ? back[i] !== h : false,
    );
    expect(mismatched.length).toBe(0);
  });
});

describe('BF16 conversion', () => {
  it('rounds to nearest even and overflows to inf', () => {
    expect(bf16(1, -2, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20)).toEqual([
      0x3f80, 0xc000, 0x3f80, 0x3f82, 0x3f81,
    ]);
    expect(bf16(3.4028234663852886e38, Infinity, -Infinity, -0)).toEqual([
      0x7f80, 0x7f80, 0xff80, 0x8000,
    ]);
    const nanBits = new Float32Array(new Uint32Array([0x7f800001, 0xffc00000]).buffer);
    expect([...bf16ToF32(f32ToBf16(nanBits))].every(Number.isNaN)).toBe(true);
  });

  it('maps every non-NaN BF16 value back to itself through F32', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToBf16(bf16ToF32(all));
    const isNan = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
    expect(all.filter((h, i) => !isNan(h) && back[i] !== h).length).toBe(0);
  });
});

describe('safetensors layout matches the Python library byte for byte', () => {
  const f32Bytes = [
    0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
  ];

  it('writes an unpadded 64-byte header', () => {
    const out = serializeSafetensors({ 'attn.0': entry('F32', [1, 2, 3], f32Bytes) });
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect([...out]).toEqual([...u64(64), ...ascii(header), ...f32Bytes]);
  });

  it('pads the header with spaces to a multiple of 8', () => {
    const out = serializeSafetensors({ attn0: entry('F32', [1, 1, 2, 3], f32Bytes) });
    const header = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ';
    expect([...out]).toEqual([...u64(72), ...ascii(header), ...f32Bytes]);
  });

  it('writes __metadata__ first and only when given', () => {
    expect([...serializeSafetensors({})]).toEqual([...u64(8), ...ascii('{}      ')]);
    const out = serializeSafetensors({}, { framework: 'pt' });
    expect([...out]).toEqual([...u64(40), ...ascii('{"__metadata__":{"framework":"pt"}}     ')]);
  });

  it('orders tensors by descending alignment, then by name bytes', () => {
    const out = serializeSafetensors({
      a: entry('U8', [3], [7, 8, 9]),
      b: entry('F16', [2, 0], []),
      '9': entry('F32', [], [4, 4, 4, 4]),
      '10': entry('F32', [1], [3, 3, 3, 3]),
      c: entry('I64', [1], [1, 1, 1, 1, 1, 1, 1, 1]),
    });
    const header =
      '{"c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
      '"10":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},' +
      '"9":{"dtype":"F32","shape":[],"data_offsets":[12,16]},' +
      '"b":{"dtype":"F16","shape":[2,0],"data_offsets":[16,16]},' +
      '"a":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}}      ';
    const data = [1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 4, 4, 4, 4, 7, 8, 9];
    expect([...out]).toEqual([...u64(280), ...ascii(header), ...data]);
  });

  it('compares names as UTF-8 bytes, as Rust does, not as UTF-16 code units', () => {
    // U+E000 sorts after the surrogate pair of U+1F600 in UTF-16, before it in UTF-8.
    const out = serializeSafetensors({
      '\u{1F600}': entry('U8', [1], [1]),
      '\uE000': entry('U8', [1], [2]),
    });
    expect([...out.subarray(out.length - 2)]).toEqual([2, 1]);
  });
});

describe('safetensors round trips', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lorafleet-safetensors-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it.each(['F32', 'F16', 'BF16'] as const)('keeps %s values through a file', async (dtype) => {
    const values = new Float32Array([1.5, -2, 0.25, 0, -0.125, 3]);
    const path = join(dir, `${dtype}.safetensors`);
    await writeSafetensorsFile(path, { w: float32Entry(values, [2, 3], dtype) }, { step: '7' });
    const file = await readSafetensorsFile(path);
    const w = file.tensors.get('w')!;
    expect([w.dtype, w.shape, w.bytes.byteLength]).toEqual([
      dtype,
      [2, 3],
      dtype === 'F32' ? 24 : 12,
    ]);
    expect(toFloat32(w, 'w', path)).toEqual(values);
    expect(file.metadata).toEqual({ step: '7' });
    expect((await readdir(dir)).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('keeps scalars, empty tensors, F64 and integer dtypes', () => {
    const f64 = new Uint8Array(new Float64Array([0.5, -4]).buffer);
    const tensors = new Map<string, TensorEntry>([
      ['scalar', float32Entry(new Float32Array([42]), [])],
      ['empty', float32Entry(new Float32Array(0), [0])],
      ['empty2d', entry('I32', [3, 0], [])],
      ['double', { dtype: 'F64', shape: [2], bytes: f64 }],
      ['mask', entry('BOOL', [2], [1, 0])],
      ['ids', entry('I64', [1], [9, 0, 0, 0, 0, 0, 0, 0])],
    ]);
    const file = parseSafetensors(serializeSafetensors(tensors), 'mem');
    expect(file.metadata).toEqual({});
    expect(new Map([...file.tensors].map(([k, v]) => [k, { ...v, bytes: [...v.bytes] }]))).toEqual(
      new Map([...tensors].map(([k, v]) => [k, { ...v, bytes: [...v.bytes] }])),
    );
    expect(toFloat32(file.tensors.get('scalar')!, 'scalar', 'mem')).toEqual(new Float32Array([42]));
    expect(toFloat32(file.tensors.get('double')!, 'double', 'mem')).toEqual(
      new Float32Array([0.5, -4]),
    );
  });

  it('reads F32 data that sits at an unaligned offset', () => {
    const bytes = new Uint8Array(9);
    bytes.set(new Uint8Array(new Float32Array([1.25, -3]).buffer), 1);
    const e: TensorEntry = { dtype: 'F32', shape: [2], bytes: bytes.subarray(1) };
    expect(toFloat32(e, 'x', 'mem')).toEqual(new Float32Array([1.25, -3]));
  });
});

describe('safetensors rejects malformed files', () => {
  const source = 'model.safetensors';
  const parse = (buf: Uint8Array) => () => parseSafetensors(buf, source);
  const f32 = (shape: number[], begin: number, end: number) => ({
    dtype: 'F32',
    shape,
    data_offsets: [begin, end],
  });

  it('rejects short files and bad header lengths', () => {
    expect(parse(new Uint8Array(5))).toThrow(/^model\.safetensors: file is 5 bytes, too short/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(parse(huge)).toThrow(
      /model\.safetensors: header length 1099511627776 is over the 100000000-byte limit/,
    );
    expect(parse(new Uint8Array([...u64(100), ...ascii('{}')]))).toThrow(
      /header length 100 runs past the 10-byte file/,
    );
  });

  it('rejects headers that are not a UTF-8 JSON object', () => {
    expect(parse(rawFile('{"a": nope}', 0))).toThrow(
      /model\.safetensors: header is not valid JSON/,
    );
    expect(parse(rawFile(' {}', 0))).toThrow(/header does not start with '\{'/);
    expect(parse(rawFile('[]', 0))).toThrow(/header does not start with '\{'/);
    expect(parse(new Uint8Array([...u64(3), 0x7b, 0xff, 0x7d]))).toThrow(
      /header is not valid UTF-8/,
    );
    expect(parse(rawFile('{"a":1,"a":2}', 0))).toThrow(/header lists "a" twice/);
  });

  it('rejects bad entries, naming the tensor and field', () => {
    expect(parse(rawFile({ x: { dtype: 'F128', shape: [1], data_offsets: [0, 4] } }, 4))).toThrow(
      /model\.safetensors: tensor "x": dtype "F128" is not one of BOOL, U8/,
    );
    expect(parse(rawFile({ x: f32([-1], 0, 4) }, 4))).toThrow(
      /tensor "x": shape \[-1\] is not a list/,
    );
    expect(parse(rawFile({ x: f32([1.5], 0, 4) }, 4))).toThrow(/tensor "x": shape \[1.5\]/);
    expect(parse(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4))).toThrow(
      /tensor "x": data_offsets \[0\] must be two non-negative integers/,
    );
    expect(parse(rawFile({ x: f32([0], 4, 0) }, 4))).toThrow(
      /data_offsets \[4, 0\] end before they begin/,
    );
    expect(parse(rawFile({ __metadata__: { a: 1 } }, 0))).toThrow(/__metadata__ "a" is 1/);
  });

  it('rejects byte lengths that do not match shape and dtype', () => {
    expect(parse(rawFile({ 'h.0.attn.c_attn.weight': f32([5, 10], 0, 100) }, 100))).toThrow(
      'model.safetensors: tensor "h.0.attn.c_attn.weight": data_offsets [0, 100] hold 100 bytes ' +
        'but shape [5, 10] of F32 needs 200; the file is corrupt or was truncated',
    );
  });

  it('rejects truncated data and offsets past the end', () => {
    const good = serializeSafetensors({ a: float32Entry(new Float32Array(4), [4]) });
    expect(parse(good)).not.toThrow();
    expect(parse(good.subarray(0, good.length - 1))).toThrow(
      /tensor "a": data_offsets \[0, 16\] run past the 15-byte data buffer; the file is corrupt/,
    );
    expect(parse(rawFile({ a: f32([1], 0, 4), b: f32([1], 4, 8) }, 6))).toThrow(
      /tensor "b".*run past/,
    );
  });

  it('rejects overlaps, holes and trailing bytes', () => {
    expect(parse(rawFile({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12))).toThrow(
      /tensor "b": data_offsets \[4, 12\]: overlap the previous tensor, which ends at 8/,
    );
    expect(parse(rawFile({ a: f32([1], 0, 4), b: f32([1], 8, 12) }, 12))).toThrow(
      /tensor "b": data_offsets \[8, 12\]: leave bytes 4\.\.8 unused/,
    );
    expect(parse(rawFile({ a: f32([1], 0, 4) }, 8))).toThrow(/tensors cover 4 of the 8 data bytes/);
    // Zero-sized tensors may share an offset, as the Python library allows.
    expect(
      parse(rawFile({ a: f32([0], 0, 0), b: f32([0], 0, 0), c: f32([1], 0, 4) }, 4)),
    ).not.toThrow();
  });
});

describe('safetensors refuses to write what readers would reject', () => {
  it('checks names, byte lengths and element counts', () => {
    expect(() => serializeSafetensors({ a: entry('F32', [2], [1, 2, 3]) })).toThrow(
      /tensor "a": 3 bytes given but shape \[2\] of F32 needs 8/,
    );
    expect(() => serializeSafetensors({ __metadata__: entry('U8', [1], [1]) })).toThrow(/reserved/);
    expect(() => serializeSafetensors({ '': entry('U8', [1], [1]) })).toThrow(/reserved/);
    expect(() => serializeSafetensors({ a: entry('U16' as 'U8', [1], [1, 1]) })).toThrow(
      /dtype "U16"/,
    );
    expect(() => float32Entry(new Float32Array(5), [2, 3])).toThrow(
      /shape \[2, 3\] does not hold 5/,
    );
    expect(() => toFloat32(entry('I32', [1], [1, 0, 0, 0]), 'ids', 'f.safetensors')).toThrow(
      'f.safetensors: tensor "ids": dtype I32 is not F32, F16, BF16 or F64',
    );
  });
});
