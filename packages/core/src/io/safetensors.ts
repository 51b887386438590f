// The safetensors format: u64le header length N, N bytes of JSON header, then the
// data buffer. Reading applies the checks of Hugging Face's reference library (so
// what it rejects, we reject) before anything sized by the header is allocated;
// writing reproduces its layout byte for byte.
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './dtype.js';

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** `bytes` are little-endian, row-major; after parsing they view the file buffer. */
export interface TensorEntry {
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** The reference library refuses larger headers; so do we, before decoding one. */
export const MAX_HEADER_BYTES = 100_000_000;

// In the reference library's dtype order (its enum's declaration order, ascending
// alignment); it writes tensors in descending order of it.
const DTYPE_SIZE: Record<Dtype, number> = {
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
const DTYPE_ORDER = Object.keys(DTYPE_SIZE) as Dtype[];
const METADATA_KEY = '__metadata__';
const CORRUPT = 'the file is corrupt or was truncated';

function isDtype(x: unknown): x is Dtype {
  return typeof x === 'string' && Object.hasOwn(DTYPE_SIZE, x);
}

function fail(where: string, what: string): never {
  throw new SafetensorsError(`${where}: ${what}`);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Bytes a tensor needs, or undefined when the shape is malformed or too large. */
function byteSize(shape: unknown, dtype: Dtype): number | undefined {
  if (!Array.isArray(shape)) return undefined;
  let n = DTYPE_SIZE[dtype];
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || (d as number) < 0) return undefined;
    n *= d as number;
  }
  return Number.isSafeInteger(n) ? n : undefined;
}

/** JSON.parse keeps the last of two equal keys; two tensors of one name mean a broken writer. */
function duplicateTopLevelKey(json: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (json[j] === ' ' || json[j] === '\n' || json[j] === '\r' || json[j] === '\t') j++;
      if (json[j] !== ':') continue;
      const key = JSON.parse(json.slice(start, i + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return undefined;
}

interface Placed {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

export function parseSafetensors(buf: Uint8Array, source: string): SafetensorsFile {
  const size = buf.byteLength;
  if (size < 8) fail(source, `file is ${size} bytes, too short for the 8-byte header length`);
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    fail(source, `header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit; ${CORRUPT}`);
  }
  const headerEnd = 8 + Number(n);
  if (headerEnd > size)
    fail(source, `header length ${n} runs past the ${size}-byte file; ${CORRUPT}`);
  if (headerEnd === 8 || buf[8] !== 0x7b) fail(source, `header does not start with '{'`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, headerEnd));
  } catch {
    fail(source, 'header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    fail(source, `header is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(header)) fail(source, 'header is not a JSON object');
  const dup = duplicateTopLevelKey(text);
  if (dup !== undefined) fail(source, `header lists "${dup}" twice`);

  const dataLength = size - headerEnd;
  const data = new Uint8Array(buf.buffer, buf.byteOffset + headerEnd, dataLength);
  const metadata: Record<string, string> = {};
  const placed: Placed[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name !== METADATA_KEY) {
      placed.push(placeTensor(name, raw, dataLength, source));
      continue;
    }
    if (!isObject(raw)) fail(source, `${METADATA_KEY} must be an object of strings`);
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== 'string') fail(source, `${METADATA_KEY} "${k}" is ${JSON.stringify(v)}`);
      // Defined, not assigned: `metadata["__proto__"] = v` would set no entry.
      Object.defineProperty(metadata, k, {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }

  // Ordered by offsets, the tensors must tile the buffer exactly (as the reference
  // reader demands); zero-sized ones may share an offset.
  placed.sort((x, y) => x.begin - y.begin || x.end - y.end);
  let cursor = 0;
  for (const { name, begin, end } of placed) {
    const where = `${source}: tensor "${name}": data_offsets [${begin}, ${end}]`;
    if (begin < cursor) fail(where, `overlap the previous tensor, which ends at ${cursor}`);
    if (begin > cursor) fail(where, `leave bytes ${cursor}..${begin} unused; ${CORRUPT}`);
    cursor = end;
  }
  if (cursor !== dataLength) {
    const rest = `${dataLength - cursor} trailing bytes belong to no tensor`;
    fail(source, `tensors cover ${cursor} of the ${dataLength} data bytes; ${rest}`);
  }

  const tensors = new Map<string, TensorEntry>();
  for (const { name, dtype, shape, begin, end } of placed) {
    tensors.set(name, { dtype, shape, bytes: data.subarray(begin, end) });
  }
  return { tensors, metadata };
}

/** Byte size that `dtype` and `shape` call for; throws when either is malformed. */
function layoutBytes(where: string, dtype: unknown, shape: unknown): number {
  if (!isDtype(dtype)) {
    fail(where, `dtype ${JSON.stringify(dtype)} is not one of ${DTYPE_ORDER.join(', ')}`);
  }
  const needed = byteSize(shape, dtype);
  if (needed === undefined) {
    fail(where, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  return needed;
}

function placeTensor(name: string, raw: unknown, dataLength: number, source: string): Placed {
  const where = `${source}: tensor "${name}"`;
  if (!isObject(raw)) fail(where, 'header entry is not an object');
  const { dtype, shape, data_offsets: offsets } = raw;
  const needed = layoutBytes(where, dtype, shape);
  const ok = (o: unknown) => Number.isSafeInteger(o) && (o as number) >= 0;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(ok)) {
    fail(where, `data_offsets ${JSON.stringify(offsets)} must be two non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  const span = `data_offsets [${begin}, ${end}]`;
  if (begin > end) fail(where, `${span} end before they begin`);
  if (end - begin !== needed) {
    const layout = `shape ${shapeText(shape as number[])} of ${dtype as Dtype}`;
    fail(where, `${span} hold ${end - begin} bytes but ${layout} needs ${needed}; ${CORRUPT}`);
  }
  if (end > dataLength)
    fail(where, `${span} run past the ${dataLength}-byte data buffer; ${CORRUPT}`);
  // `+ 0` reads a dimension written -0 (valid JSON) as 0.
  return { name, dtype: dtype as Dtype, shape: (shape as number[]).map((d) => d + 0), begin, end };
}

function checkEntry(name: string, entry: TensorEntry): void {
  const where = `serializeSafetensors: tensor ${JSON.stringify(name)}`;
  if (name === '' || name === METADATA_KEY) fail(where, 'this name is reserved');
  // A lone surrogate would be silently replaced by U+FFFD when encoded.
  if (/\p{Cs}/u.test(name)) fail(where, 'name is not valid Unicode');
  const needed = layoutBytes(where, entry.dtype, entry.shape);
  if (entry.bytes.byteLength !== needed) {
    const layout = `shape ${shapeText(entry.shape)} of ${entry.dtype}`;
    fail(where, `${entry.bytes.byteLength} bytes given but ${layout} needs ${needed}`);
  }
}

export function serializeSafetensors(
  tensors: Map<string, TensorEntry> | Record<string, TensorEntry>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list = [...(tensors instanceof Map ? tensors : Object.entries(tensors))];
  for (const [name, entry] of list) checkEntry(name, entry);
  // Same order as the reference writer: descending alignment, then name compared
  // as UTF-8 bytes like Rust strings (UTF-16 order differs above U+FFFF).
  const rank = (d: Dtype) => DTYPE_ORDER.indexOf(d);
  const utf8 = new Map(list.map(([name]) => [name, Buffer.from(name, 'utf8')]));
  list.sort(
    ([an, a], [bn, b]) =>
      rank(b.dtype) - rank(a.dtype) || Buffer.compare(utf8.get(an)!, utf8.get(bn)!),
  );

  // Built by hand: a JS object would move integer-like keys such as "0" first.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const fields = Object.keys(metadata)
      .sort()
      .map((k) => {
        const v = metadata[k];
        if (typeof v !== 'string')
          fail('serializeSafetensors', `${METADATA_KEY} "${k}" is not a string`);
        return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
      });
    parts.push(`"${METADATA_KEY}":{${fields.join(',')}}`);
  }
  let offset = 0;
  for (const [name, { dtype, shape, bytes }] of list) {
    const begin = offset;
    offset += bytes.byteLength;
    const offsets = `[${begin},${offset}]`;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${shape}],"data_offsets":${offsets}}`,
    );
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  // Padding to 8 keeps every tensor's data aligned for zero-copy readers.
  const headerLength = Math.ceil(json.byteLength / 8) * 8;
  if (headerLength > MAX_HEADER_BYTES) {
    fail('serializeSafetensors', `header would be ${headerLength} bytes, over readers' limit`);
  }

  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLength);
  let at = 8 + headerLength;
  for (const [, { bytes }] of list) {
    out.set(bytes, at);
    at += bytes.byteLength;
  }
  return out;
}

// Typed arrays use the host's byte order and the format is little-endian.
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function toFloat32(entry: TensorEntry, name: string, source: string): Float32Array {
  if (!hostIsLittleEndian) fail(source, 'big-endian hosts are not supported');
  // The copy also realigns: offsets in a file need not be multiples of 4.
  const buffer = new Uint8Array(entry.bytes).buffer;
  switch (entry.dtype) {
    case 'F32':
      return new Float32Array(buffer);
    case 'F16':
      return f16ToF32(new Uint16Array(buffer));
    case 'BF16':
      return bf16ToF32(new Uint16Array(buffer));
    case 'F64':
      return Float32Array.from(new Float64Array(buffer));
    default:
      return fail(
        `${source}: tensor "${name}"`,
        `dtype ${entry.dtype} is not F32, F16, BF16 or F64`,
      );
  }
}

export function float32Entry(
  data: Float32Array,
  shape: number[],
  dtype: 'F32' | 'F16' | 'BF16' = 'F32',
): TensorEntry {
  if (!hostIsLittleEndian) fail('float32Entry', 'big-endian hosts are not supported');
  if (byteSize(shape, 'U8') !== data.length) {
    fail('float32Entry', `shape ${shapeText(shape)} does not hold ${data.length} elements`);
  }
  const converted =
    dtype === 'F32' ? data.slice() : dtype === 'F16' ? f32ToF16(data) : f32ToBf16(data);
  return { dtype, shape: [...shape], bytes: new Uint8Array(converted.buffer) };
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readFile(path), path);
}

export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, TensorEntry> | Record<string, TensorEntry>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}

/** Readers never see a half-written file: write a sibling temp file, fsync, rename over. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const suffix = `${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const tmp = join(dirname(path), `.${basename(path)}.${suffix}`);
  const file = await open(tmp, 'wx');
  try {
    await file.writeFile(data);
    await file.sync();
    await file.close();
    await rename(tmp, path);
  } catch (err) {
    await file.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  // Persisting the rename needs the directory synced; platforms that cannot open a
  // directory only lose durability across a power cut, so that is not an error.
  await open(dirname(path), 'r')
    .then((dir) => dir.sync().finally(() => dir.close()))
    .catch(() => undefined);
}
