// A recorded plan (recorder.ts) replayed as one command buffer: copy the
// trained parameters in, then every dispatch in recorded order (consecutive
// dispatches share a compute pass; a copy ends it), with bind groups and
// uniforms made once. Nothing is read back: the host reads an output tensor
// after the replay, as it would any tfjs tensor.
import type { tf } from '../tf.js';
import { submitWebGpuQueue } from '../grad-accumulator.js';

type DataId = object;

interface GpuBufferLike {
  size: number;
  destroy(): void;
}
interface PassLike {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y: number, z: number): void;
  end(): void;
}
interface TimestampWrites {
  timestampWrites?: {
    querySet: unknown;
    beginningOfPassWriteIndex: number;
    endOfPassWriteIndex: number;
  };
}
interface EncoderLike {
  beginComputePass(descriptor?: TimestampWrites): PassLike;
  resolveQuerySet(set: unknown, first: number, count: number, dst: unknown, offset: number): void;
  copyBufferToBuffer(
    src: unknown,
    srcOffset: number,
    dst: unknown,
    dstOffset: number,
    size: number,
  ): void;
  clearBuffer(buffer: unknown): void;
  finish(): unknown;
}

/** What a plan uses of the WebGPU device and of tfjs's backend. */
export interface PlanGpu {
  device: {
    createBuffer(d: { size: number; usage: number }): GpuBufferLike;
    createBindGroup(d: {
      layout: unknown;
      entries: { binding: number; resource: unknown }[];
    }): unknown;
    createCommandEncoder(): EncoderLike;
    createQuerySet(d: { type: 'timestamp'; count: number }): { destroy(): void };
    limits: { minUniformBufferOffsetAlignment: number };
  };
  queue: {
    writeBuffer(buffer: unknown, offset: number, data: ArrayBufferView | ArrayBuffer): void;
    submit(buffers: unknown[]): void;
  };
  tensorMap: { get(id: DataId): { resource?: unknown } | undefined; has(id: DataId): boolean };
  uploadToGPU(id: DataId): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

export type PlanEntry =
  | {
      kind: 'dispatch';
      label: string;
      pipeline: { getBindGroupLayout(i: number): unknown };
      dispatch: [number, number, number];
      ids: DataId[];
      uniforms: ArrayBuffer;
    }
  | { kind: 'copy'; from: DataId; to: DataId; toOffset: number; bytes: number };

export interface PlanParam {
  id: DataId;
  variable: tf.Variable;
}

export interface PlanLayout {
  entries: PlanEntry[];
  /** Each virtual tensor's physical buffer and its bytes (rounded up to 16). */
  virtual: Map<DataId, { slot: number; bytes: number }>;
  sizes: number[];
  constants: Map<DataId, ArrayBufferView>;
  params: PlanParam[];
  inputs: Map<string, DataId>;
}

type Step =
  | { kind: 'dispatch'; pipeline: unknown; group: unknown; dispatch: [number, number, number] }
  | { kind: 'copy'; from: () => unknown; to: () => unknown; toOffset: number; bytes: number };

// GPUBufferUsage: STORAGE | COPY_SRC | COPY_DST, and UNIFORM | COPY_DST.
const STORAGE_USAGE = 0x0080 | 0x0004 | 0x0008;
const UNIFORM_USAGE = 0x0040 | 0x0008;
const READ_USAGE = 0x0001 | 0x0008; // MAP_READ | COPY_DST
const RESOLVE_USAGE = 0x0200 | 0x0004; // QUERY_RESOLVE | COPY_SRC
const MAP_READ = 1;

interface MappableBuffer {
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
}

export class Plan {
  /** Bytes of the plan's own buffers (intermediates, inputs, parameter copies). */
  readonly bytes: number;
  /** Dispatches per replay. */
  readonly dispatches: number;
  /** Each dispatch's kernel and output shape, in order (profile()'s rows). */
  readonly labels: string[];
  private readonly buffers: GpuBufferLike[];
  private readonly uniforms: GpuBufferLike;
  private readonly steps: Step[];
  /** Tensors bound as they are (frozen weights, outputs): they must outlive the plan. */
  private readonly external = new Set<DataId>();
  private disposed = false;

  constructor(
    private readonly gpu: PlanGpu,
    private readonly layout: PlanLayout,
  ) {
    this.buffers = layout.sizes.map((size) =>
      gpu.device.createBuffer({ size, usage: STORAGE_USAGE }),
    );
    this.bytes = layout.sizes.reduce((a, b) => a + b, 0);
    const align = gpu.device.limits.minUniformBufferOffsetAlignment;
    const dispatches = layout.entries.filter((e) => e.kind === 'dispatch');
    this.dispatches = dispatches.length;
    this.labels = dispatches.map((e) => e.label);
    const offsets: number[] = [];
    let total = 0;
    for (const e of dispatches) {
      offsets.push(total);
      total += Math.ceil(e.uniforms.byteLength / align) * align;
    }
    this.uniforms = gpu.device.createBuffer({ size: Math.max(total, 16), usage: UNIFORM_USAGE });
    dispatches.forEach((e, i) => gpu.queue.writeBuffer(this.uniforms, offsets[i]!, e.uniforms));
    for (const [id, values] of layout.constants)
      gpu.queue.writeBuffer(this.bufferOf(id), 0, values);
    let next = 0;
    this.steps = layout.entries.map((e) => {
      if (e.kind === 'copy') {
        for (const id of [e.from, e.to]) this.noteExternal(id);
        return {
          kind: 'copy',
          from: () => this.bufferOf(e.from),
          to: () => this.bufferOf(e.to),
          toOffset: e.toOffset,
          bytes: e.bytes,
        };
      }
      const offset = offsets[next++]!;
      const entries = e.ids.map((id, binding) => ({ binding, resource: this.binding(id) }));
      entries.push({
        binding: e.ids.length,
        resource: { buffer: this.uniforms, offset, size: e.uniforms.byteLength },
      });
      const group = gpu.device.createBindGroup({
        layout: e.pipeline.getBindGroupLayout(0),
        entries,
      });
      return { kind: 'dispatch', pipeline: e.pipeline, group, dispatch: e.dispatch };
    });
  }

  /**
   * One replay: writes the named inputs, zeroes `clear`, copies the
   * parameters in, then runs every step, as one submitted command buffer
   * after whatever tfjs has queued.
   */
  replay(inputs: Record<string, ArrayBufferView>, clear: tf.TensorInfo[] = []): void {
    const encoder = this.begin(inputs, clear);
    this.encode(encoder, null);
    this.gpu.queue.submit([encoder.finish()]);
  }

  /**
   * A replay with every dispatch in its own compute pass, timed on the GPU by
   * timestamp queries (the device needs 'timestamp-query'; Dawn quantizes
   * them unless started with disable-dawn-features=timestamp_quantization):
   * each dispatch's label and nanoseconds, in order.
   */
  async profile(
    inputs: Record<string, ArrayBufferView>,
    clear: tf.TensorInfo[] = [],
  ): Promise<{ label: string; ns: number }[]> {
    const count = 2 * this.dispatches;
    const querySet = this.gpu.device.createQuerySet({ type: 'timestamp', count });
    const resolved = this.gpu.device.createBuffer({ size: count * 8, usage: RESOLVE_USAGE });
    try {
      const encoder = this.begin(inputs, clear);
      this.encode(encoder, querySet);
      encoder.resolveQuerySet(querySet, 0, count, resolved, 0);
      this.gpu.queue.submit([encoder.finish()]);
      const times = new BigUint64Array((await this.readBuffer(resolved, count * 8)).buffer);
      return this.labels.map((label, i) => ({
        label,
        ns: Number(times[2 * i + 1]! - times[2 * i]!),
      }));
    } finally {
      querySet.destroy();
      resolved.destroy();
    }
  }

  /** Checks the bindings, copies the parameters in, writes the inputs: an encoder to add the steps to. */
  private begin(inputs: Record<string, ArrayBufferView>, clear: tf.TensorInfo[]): EncoderLike {
    if (this.disposed) throw new Error('this plan was disposed');
    const { gpu } = this;
    for (const id of this.external) {
      if (!gpu.tensorMap.has(id))
        throw new Error('a tensor the plan binds was disposed: record the plan again');
    }
    // Buffers first: uploading a tensor queues a copy on tfjs's encoder...
    const params = this.layout.params.map((p) => ({
      from: this.bufferOf(p.variable.dataId),
      to: this.bufferOf(p.id),
      bytes: p.variable.size * 4,
    }));
    const cleared = clear.map((t) => this.bufferOf(t.dataId));
    // (a copy's real tensor too: its upload, queued after the replay, would overwrite what the replay wrote)
    for (const s of this.steps) {
      if (s.kind !== 'copy') continue;
      s.from();
      s.to();
    }
    // ...then tfjs's queued work, which may have written what the plan reads.
    submitWebGpuQueue(gpu);
    for (const [name, id] of this.layout.inputs) {
      const data = inputs[name];
      if (!data) throw new Error(`the plan's input "${name}" was not given`);
      gpu.queue.writeBuffer(this.bufferOf(id), 0, data);
    }
    const encoder = gpu.device.createCommandEncoder();
    for (const b of cleared) encoder.clearBuffer(b);
    for (const p of params) encoder.copyBufferToBuffer(p.from, 0, p.to, 0, p.bytes);
    return encoder;
  }

  /** Every step: dispatches share compute passes (one each when timed), copies end them. */
  private encode(encoder: EncoderLike, timed: unknown): void {
    let pass: PassLike | null = null;
    let dispatch = 0;
    for (const s of this.steps) {
      if (s.kind === 'copy') {
        pass?.end();
        pass = null;
        encoder.copyBufferToBuffer(s.from(), 0, s.to(), s.toOffset, s.bytes);
        continue;
      }
      const timestampWrites = timed
        ? {
            querySet: timed,
            beginningOfPassWriteIndex: 2 * dispatch,
            endOfPassWriteIndex: 2 * dispatch + 1,
          }
        : undefined;
      if (timestampWrites) pass?.end();
      if (timestampWrites || !pass)
        pass = encoder.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.group);
      pass.dispatchWorkgroups(...s.dispatch);
      if (timestampWrites) {
        pass.end();
        pass = null;
      }
      dispatch++;
    }
    pass?.end();
  }

  /** A tensor's values, read after everything queued so far (tfjs's read would keep a stale copy). */
  async read(t: tf.TensorInfo): Promise<Float32Array> {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
    return new Float32Array((await this.readBuffer(this.bufferOf(t.dataId), bytes)).buffer);
  }

  /** `bytes` of a buffer, copied out after everything queued so far. */
  private async readBuffer(source: unknown, bytes: number): Promise<Uint8Array> {
    const { gpu } = this;
    submitWebGpuQueue(gpu);
    const staging = gpu.device.createBuffer({ size: bytes, usage: READ_USAGE }) as GpuBufferLike &
      MappableBuffer;
    try {
      const encoder = gpu.device.createCommandEncoder();
      encoder.copyBufferToBuffer(source, 0, staging, 0, bytes);
      gpu.queue.submit([encoder.finish()]);
      await staging.mapAsync(MAP_READ);
      return new Uint8Array(staging.getMappedRange().slice(0));
    } finally {
      staging.destroy();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.buffers) b.destroy();
    this.uniforms.destroy();
  }

  private noteExternal(id: DataId): void {
    if (!this.layout.virtual.has(id)) this.external.add(id);
  }

  private binding(id: DataId): unknown {
    const v = this.layout.virtual.get(id);
    if (v) return { buffer: this.buffers[v.slot], offset: 0, size: v.bytes };
    this.noteExternal(id);
    return { buffer: this.bufferOf(id) };
  }

  /** The GPU buffer behind a virtual or a real (tfjs) tensor. */
  private bufferOf(id: DataId): unknown {
    const v = this.layout.virtual.get(id);
    if (v) return this.buffers[v.slot];
    this.gpu.uploadToGPU(id);
    const resource = this.gpu.tensorMap.get(id)?.resource;
    if (!resource) throw new Error('a tensor the plan binds has no GPU buffer');
    return resource;
  }
}
