// NF4, QLoRA's 4-bit NormalFloat (Dettmers et al. 2023, arXiv 2305.14314),
// stored as bitsandbytes stores it (quantize_4bit with quant_type "nf4",
// blocksize 64, no double quantization):
// - W is read in PyTorch's [out, in] order and cut into blocks of 64 values;
//   each block keeps absmax = max |w| as an f32, and each value the index of
//   the nearest of 16 code values (NF4_CODE, from -1 to 1) to w / absmax;
// - two indices per byte, the first in the high nibble; bytes 4k..4k+3 make
//   int32 word k (little-endian), so the packed bytes are bitsandbytes'.
// W is 0.5 + 4/64 = 0.5625 bytes per value instead of 4. Dequantized, each
// value is NF4_CODE[index] * absmax, as bitsandbytes' dequantize_4bit (in f32).

/** The 16 NF4 values, as bitsandbytes' table (backends/utils.py, kernels.cu). */
export const NF4_CODE = Float32Array.of(
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
);

/** Values per absmax (bitsandbytes' and QLoRA's default blocksize). */
export const NF4_BLOCK = 64;

/**
 * The midpoints between neighbouring NF4 values, in f32 as bitsandbytes'
 * dQuantizeNF4 compares with them (kernels.cu; its decision tree is a
 * binary search over these).
 */
const NF4_MIDPOINTS = Float32Array.of(
  -0.8480964004993439,
  -0.6106329262256622,
  -0.4599952697753906,
  -0.33967943489551544,
  -0.23460740596055984,
  -0.13791173323988914,
  -0.045525018125772476,
  0.03979014977812767,
  0.1202552504837513,
  0.2035212516784668,
  0.2920137718319893,
  0.3893125355243683,
  0.5016634166240692,
  0.6427869200706482,
  0.8614784181118011,
);

/**
 * The NF4 index of x (x = w / absmax in [-1, 1]): how many midpoints lie
 * below it, found in four comparisons. NaN (an all-zero block: 0 * (1 / 0))
 * gives 0, as in bitsandbytes.
 */
export function nf4Index(x: number): number {
  let index = 0;
  for (let step = 8; step >= 1; step >>= 1) if (x > NF4_MIDPOINTS[index + step - 1]!) index += step;
  return index;
}

/** W quantized: packed nibbles int32 [ceil(n / 8)], absmax f32 [ceil(n / 64)]. */
export interface Nf4Packed {
  packed: Int32Array;
  absmax: Float32Array;
}

/** values [n] in [out, in] order -> NF4 (bitsandbytes' blocks and bytes). */
export function quantizeNf4(values: Float32Array): Nf4Packed {
  const n = values.length;
  const absmax = new Float32Array(Math.ceil(n / NF4_BLOCK));
  const bytes = new Uint8Array(4 * Math.ceil(n / 8));
  for (let block = 0; block < absmax.length; block++) {
    const start = block * NF4_BLOCK;
    const end = Math.min(n, start + NF4_BLOCK);
    let max = 0;
    for (let i = start; i < end; i++) max = Math.max(max, Math.abs(values[i]!));
    absmax[block] = max;
    const inverse = Math.fround(1 / absmax[block]!); // bitsandbytes multiplies by 1 / absmax in f32
    // An odd tail pads a zero, as bitsandbytes' loads do.
    for (let i = start; i < end + ((end - start) % 2); i++) {
      const x = i < end ? Math.fround(values[i]! * inverse) : 0;
      bytes[i >> 1]! |= nf4Index(x) << (i % 2 === 0 ? 4 : 0);
    }
  }
  return { packed: new Int32Array(bytes.buffer), absmax };
}

/** The NF4 index of value i of the packed words (i in [out, in] order). */
function indexAt(packed: Int32Array, i: number): number {
  const byte = (packed[i >>> 3]! >>> (8 * ((i >>> 1) & 3))) & 0xff;
  return i & 1 ? byte & 0xf : byte >>> 4;
}

/**
 * quantizeNf4's inverse into `out`, shaped [rows, cols]: W as quantized
 * ([out, in]) or, with `transposed`, its transpose ([in, out] for a
 * fan-in-fan-out layer, whose blocks still run along `in`).
 */
export function dequantizeNf4Into(
  { packed, absmax }: Nf4Packed,
  shape: readonly [number, number],
  transposed: boolean,
  out: Float32Array,
): void {
  const [rows, cols] = shape;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = transposed ? c * rows + r : r * cols + c; // the value's place in [out, in]
      out[r * cols + c] = NF4_CODE[indexAt(packed, i)]! * absmax[Math.floor(i / NF4_BLOCK)]!;
    }
  }
}

/** values [rows, cols] (row-major) -> their transpose [cols, rows]. */
export function transposed(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  return out;
}
