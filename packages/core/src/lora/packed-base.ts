// A frozen W stored in fewer bytes than f32 (--base-dtype bf16, f16, nf4):
// how each dtype packs W's values, and the kernel call that unpacks it back
// to f32 in its storage shape for one matmul (backend/unpack-base.ts). The
// tape (linear.ts) and the hand-scheduled webgpu step both run that call.
import { tf } from '../backend/tf.js';
import { UNPACK_HALVES, UNPACK_NF4 } from '../backend/unpack-base.js';
import { type BaseDtype, packHalves } from './base-dtype.js';
import { type Nf4Packed, quantizeNf4, transposed } from './nf4.js';

export type PackedDtype = Exclude<BaseDtype, 'f32'>;

/** A kernel that turns `inputs` into W in f32, shaped as stored. */
export interface UnpackCall {
  kernel: string;
  inputs: Record<string, tf.Tensor1D>;
  attrs: Record<string, unknown>;
}

/** W as stored in `dtype`, with the call that unpacks it. */
export interface PackedBase {
  dtype: PackedDtype;
  unpack: UnpackCall;
}

type Packer = (values: Float32Array, shape: [number, number], fanInFanOut: boolean) => UnpackCall;

const halves =
  (dtype: 'bf16' | 'f16'): Packer =>
  (values, shape) => ({
    kernel: UNPACK_HALVES,
    inputs: { packed: tf.tensor1d(packHalves(values, dtype), 'int32') },
    attrs: { dtype, shape },
  });

/** W already in NF4 (quantized as [out, in]), shaped `shape` as stored. */
function nf4Call(nf4: Nf4Packed, shape: [number, number], fanInFanOut: boolean): UnpackCall {
  return {
    kernel: UNPACK_NF4,
    inputs: { packed: tf.tensor1d(nf4.packed, 'int32'), absmax: tf.tensor1d(nf4.absmax) },
    attrs: { shape, transposed: fanInFanOut },
  };
}

const PACKERS: Record<PackedDtype, Packer> = {
  bf16: halves('bf16'),
  f16: halves('f16'),
  // bitsandbytes quantizes W as [out, in]: a fan-in-fan-out W ([in, out]) is transposed first.
  nf4: (values, shape, fanInFanOut) =>
    nf4Call(quantizeNf4(fanInFanOut ? transposed(values, ...shape) : values), shape, fanInFanOut),
};

/** W's values ([rows, cols] as stored, row-major) packed as `dtype`. */
export function packBase(
  values: Float32Array,
  dtype: PackedDtype,
  shape: [number, number],
  fanInFanOut: boolean,
): PackedBase {
  return { dtype, unpack: PACKERS[dtype](values, shape, fanInFanOut) };
}

/** W quantized elsewhere (a bitsandbytes 4-bit checkpoint's bytes and absmax), kept as they are. */
export function packedNf4Base(
  nf4: Nf4Packed,
  shape: [number, number],
  fanInFanOut: boolean,
): PackedBase {
  const n = shape[0] * shape[1];
  if (nf4.packed.length !== Math.ceil(n / 8) || nf4.absmax.length !== Math.ceil(n / 64)) {
    throw new Error(
      `NF4 for [${shape.join(', ')}] needs ${Math.ceil(n / 8)} words and ${Math.ceil(n / 64)} absmax values, ` +
        `got ${nf4.packed.length} and ${nf4.absmax.length}`,
    );
  }
  return { dtype: 'nf4', unpack: nf4Call(nf4, shape, fanInFanOut) };
}

/** W in f32 as stored, unpacked now (a new tensor: dispose it, or run inside tidy). */
export function unpackBase({ unpack }: PackedBase): tf.Tensor2D {
  const { kernel, inputs, attrs } = unpack;
  return tf.engine().runKernel(kernel, inputs, attrs as never) as tf.Tensor2D;
}

export function disposePackedBase({ unpack }: PackedBase): void {
  tf.dispose(Object.values(unpack.inputs));
}

/** W as a layer is given it: a tensor, its values on the host, or already NF4 (a 4-bit checkpoint). */
export type BaseWeight =
  | tf.Tensor2D
  | { values: Float32Array; shape: [number, number] }
  | { nf4: Nf4Packed; shape: [number, number] };

/**
 * Layer `name`'s W stored as `baseDtype` ([rows, cols] = `shape`, its storage
 * orientation): an f32 variable named `variableName`, or packed (which needs W's host values, or
 * W already in NF4 for nf4). Exactly one of the two is set.
 */
export function storeBase(
  weight: BaseWeight,
  baseDtype: BaseDtype,
  shape: [number, number],
  fanInFanOut: boolean,
  name: string,
  variableName: string,
): { variable: tf.Variable<tf.Rank.R2> | null; packed: PackedBase | null } {
  const [rows, cols] = shape;
  if ('nf4' in weight) {
    if (baseDtype !== 'nf4') throw new Error(`${name}: W given in NF4 needs baseDtype nf4`);
    return { variable: null, packed: packedNf4Base(weight.nf4, shape, fanInFanOut) };
  }
  const values = weight instanceof tf.Tensor ? null : weight.values;
  if (values !== null && values.length !== rows * cols) {
    throw new Error(`${name}: ${values.length} weight values cannot fill [${rows}, ${cols}]`);
  }
  if (baseDtype === 'f32') {
    const variable =
      values === null
        ? tf.variable(weight as tf.Tensor2D, false, variableName)
        : tf.tidy(() => tf.variable(tf.tensor2d(values, shape), false, variableName));
    return { variable, packed: null };
  }
  if (values === null) {
    throw new Error(`${name}: packing W as ${baseDtype} at construction needs its host values`);
  }
  return { variable: null, packed: packBase(values, baseDtype, shape, fanInFanOut) };
}
