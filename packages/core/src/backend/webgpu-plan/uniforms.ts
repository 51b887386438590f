// A program's uniform block, laid out byte for byte as tfjs-backend-webgpu's
// recordAndSubmit and makeUniforms lay it out (backend_webgpu.ts, tfjs 4.22):
// NaN, Infinity, then each input's and the output's shape and strides, the
// output size when the program asks for it, then the program's own uniforms;
// each field aligned as WGSL aligns a vecN<i32|f32> (4, 8 or 16 bytes). A
// recorded plan writes this block once, so the layout must be tfjs's
// (test: webgpu-plan.test.ts compares the bytes with tfjs's makeUniforms).

export interface UniformField {
  type: 'int32' | 'uint32' | 'float32';
  data: number[];
}

/** What the layout reads of a tfjs program. */
export interface UniformProgram {
  outputShape: number[];
  size?: boolean;
  outputComponent?: number;
  pixelsOpType?: unknown;
}

function strides(shape: readonly number[]): number[] {
  const out: number[] = [];
  let stride = 1;
  for (let i = shape.length - 1; i > 0; i--) {
    stride *= shape[i]!;
    out.unshift(stride);
  }
  return out;
}

/** The fields tfjs binds for `program` run on inputs of `shapes` into `outputShape`. */
export function programUniforms(
  program: UniformProgram,
  inputShapes: readonly number[][],
  outputShape: number[],
  own: readonly UniformField[] = [],
): UniformField[] {
  if (program.pixelsOpType != null) throw new Error('a plan records no pixel programs');
  const fields: UniformField[] = [
    { type: 'float32', data: [NaN] },
    { type: 'float32', data: [Infinity] },
  ];
  for (const shape of [...inputShapes, outputShape]) {
    fields.push({ type: 'int32', data: [...shape] }, { type: 'int32', data: strides(shape) });
  }
  if (program.size) {
    const size = program.outputShape.reduce((a, b) => a * b, 1);
    fields.push({
      type: 'int32',
      data: [program.outputComponent ? size / program.outputComponent : size],
    });
  }
  return [...fields, ...own.map((f) => ({ type: f.type, data: [...f.data] }))];
}

const ALIGN: Record<number, number> = { 1: 4, 2: 8, 3: 16, 4: 16, 5: 16, 6: 16 };

/** The bytes of the uniform block (its length a multiple of the widest field's alignment). */
export function packUniforms(fields: readonly UniformField[]): ArrayBuffer {
  const offsets: number[] = [];
  let offset = 0;
  let previous = 0;
  let widest = 1;
  for (const f of fields) {
    const length = Math.max(1, f.data.length);
    let align = ALIGN[length];
    if (align === undefined) throw new Error(`a uniform of ${length} values has no WGSL layout`);
    if (previous === 5 || previous === 6) align = 16;
    widest = Math.max(widest, align);
    offset = Math.ceil(offset / align) * align;
    previous = length;
    offsets.push(offset);
    offset += length * 4;
  }
  const bytes = new ArrayBuffer(Math.ceil(offset / widest) * widest);
  fields.forEach((f, i) => {
    const data = f.data.length === 0 ? [1] : f.data;
    const View = f.type === 'int32' ? Int32Array : f.type === 'uint32' ? Uint32Array : Float32Array;
    new View(bytes, offsets[i]!, data.length).set(data);
  });
  return bytes;
}
