// Records a sequence of the project's WebGPU kernels once, as a plan to
// replay as one command buffer (plan.ts): the hand-scheduled step's
// machinery (docs/webgpu-kernels.md, "The hand-scheduled step").
//
// Recording runs each kernel function as tfjs would, with tfjs's
// recordAndSubmit replaced: tfjs compiles (or finds) the pipeline and sizes
// the dispatch, and the recorder keeps the pipeline, the dispatch, the
// bindings and the uniform block instead of encoding them. Every tensor a
// kernel creates while recording is virtual: it gets no GPU buffer then; at
// finish() each gets a slice of a physical buffer by liveness
// (allocate.ts), so intermediates whose lives do not overlap share memory.
// Tensors that were made outside the recording (the frozen weights) are
// bound as they are.
import { tf } from '../tf.js';
import { submitWebGpuQueue } from '../grad-accumulator.js';
import { type Allocation, type BufferUse, allocateByLiveness } from './allocate.js';
import { Plan, type PlanEntry, type PlanGpu, type PlanParam } from './plan.js';
import { type UniformField, packUniforms, programUniforms } from './uniforms.js';

type Info = tf.TensorInfo;
type DataId = object;

interface TensorData {
  dtype: string;
  shape: number[];
  resource?: unknown;
}

/** The parts of tfjs-backend-webgpu's backend (4.22) that recording replaces or reads. */
export interface RecordingBackend {
  device: PlanGpu['device'];
  queue: PlanGpu['queue'];
  tensorMap: {
    get(id: DataId): TensorData | undefined;
    has(id: DataId): boolean;
    delete(id: DataId): boolean;
  };
  makeTensorInfo(shape: number[], dtype: string, values?: unknown): Info;
  uploadToGPU(id: DataId): void;
  disposeData(id: DataId, force?: boolean): boolean;
  recordAndSubmit(program: object, output: Info, inputs: Info[], uniforms?: UniformField[]): void;
  runWebGPUProgram(
    program: object,
    inputs: Info[],
    dtype: string,
    uniforms?: UniformField[],
    output?: Info,
  ): Info;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

interface RecordedProgram {
  pipeline: { getBindGroupLayout(i: number): unknown } | Promise<unknown>;
  dispatch: [number, number, number];
  outputShape: number[];
  size?: boolean;
  outputComponent?: number;
  pixelsOpType?: unknown;
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 4 };
const bytesOf = (d: TensorData) => d.shape.reduce((a, b) => a * b, 1) * (BYTES[d.dtype] ?? 4);

export class PlanRecorder {
  private readonly virtual = new Set<DataId>();
  private readonly pinned = new Set<DataId>();
  private readonly entries: PlanEntry[] = [];
  private readonly constants = new Map<DataId, ArrayBufferView>();
  private readonly params: { id: DataId; variable: tf.Variable }[] = [];
  private readonly inputs = new Map<string, DataId>();
  private recording = false;
  /** The kernel or program being recorded: its dispatches' label in a profile. */
  private label = '';

  /** tfjs's own makeTensorInfo (capture() replaces the backend's while recording). */
  private readonly makeTensorInfo: RecordingBackend['makeTensorInfo'];

  constructor(
    private readonly backend: RecordingBackend,
    /** measureOnly: upload nothing, make no plan; bytes() says what the plan would take. */
    private readonly options: { measureOnly?: boolean } = {},
  ) {
    this.makeTensorInfo = backend.makeTensorInfo.bind(backend);
  }

  /** A value the host writes before each replay (token ids, labels), by name. */
  input(name: string, shape: number[], dtype: 'int32' | 'float32'): Info {
    const info = this.newVirtual(shape, dtype);
    this.pinned.add(info.dataId);
    this.inputs.set(name, info.dataId);
    return info;
  }

  /** A constant, written once when the plan is made. */
  constant(values: Float32Array | Int32Array, shape: number[]): Info {
    const info = this.newVirtual(shape, values instanceof Int32Array ? 'int32' : 'float32');
    this.pinned.add(info.dataId);
    this.constants.set(info.dataId, values);
    return info;
  }

  /** A trained variable: each replay first copies its current value into the plan. */
  param(variable: tf.Variable): Info {
    const info = this.newVirtual(variable.shape, variable.dtype);
    this.pinned.add(info.dataId);
    this.params.push({ id: info.dataId, variable });
    return info;
  }

  /** Runs a registered webgpu kernel (the project's) while recording; returns its (virtual) output. */
  kernel(name: string, inputs: Record<string, Info>, attrs: Record<string, unknown> = {}): Info {
    const kernel = tf.getKernel(name, 'webgpu');
    if (!kernel) throw new Error(`no webgpu kernel ${name}: load the webgpu kernels first`);
    return this.capture(
      name,
      () =>
        kernel.kernelFunc({
          inputs: inputs as tf.NamedTensorInfoMap,
          backend: this.backend as unknown as tf.KernelBackend,
          attrs: attrs as tf.NamedAttrMap,
        }) as Info,
    );
  }

  /** Runs a tfjs-shaped WebGPU program while recording; into `output` when given (a real tensor). */
  program(program: object, inputs: Info[], uniforms: UniformField[] = [], output?: Info): Info {
    const key = (program as { shaderKey?: string }).shaderKey ?? 'program';
    return this.capture(key.replace(/^lorafleet_plumbing_/, ''), () =>
      this.backend.runWebGPUProgram(program, inputs, 'float32', uniforms, output),
    );
  }

  /** Copies `from` into `to` (virtual or real) at element offset `toOffset`, after what came before. */
  copy(from: Info, to: Info, toOffset = 0): void {
    const data = this.data(from.dataId);
    this.entries.push({
      kind: 'copy',
      from: from.dataId,
      to: to.dataId,
      toOffset: toOffset * 4,
      bytes: bytesOf(data),
    });
  }

  /** Allocates the buffers, writes the constants and uniforms: the plan, ready to replay. */
  finish(): Plan {
    if (this.options.measureOnly)
      throw new Error('a measure-only recording makes no plan: call bytes()');
    const { ids, uses, allocation } = this.allocate();
    const plan = new Plan(this.backend, {
      entries: this.entries,
      virtual: new Map(
        ids.map((id, i) => [id, { slot: allocation.slot[i]!, bytes: uses[i]!.bytes }]),
      ),
      sizes: allocation.sizes,
      constants: this.constants,
      params: this.params as PlanParam[],
      inputs: this.inputs,
    });
    this.forget();
    return plan;
  }

  /**
   * What the plan's buffers would take, without making them: the bytes after
   * sharing by liveness, and every intermediate's bytes without sharing.
   */
  bytes(): { shared: number; unshared: number; dispatches: number } {
    const { uses, allocation } = this.allocate();
    this.forget();
    return {
      shared: allocation.sizes.reduce((a, b) => a + b, 0),
      unshared: uses.reduce((a, u) => a + u.bytes, 0),
      dispatches: this.entries.filter((e) => e.kind === 'dispatch').length,
    };
  }

  private allocate(): { ids: DataId[]; uses: BufferUse[]; allocation: Allocation } {
    const ids = [...this.virtual];
    const index = new Map(ids.map((id, i) => [id, i]));
    const uses: BufferUse[] = ids.map((id) => ({
      bytes: Math.max(16, Math.ceil(bytesOf(this.data(id)) / 16) * 16),
      first: Infinity,
      last: -1,
      pinned: this.pinned.has(id),
    }));
    this.entries.forEach((e, step) => {
      for (const id of e.kind === 'dispatch' ? e.ids : [e.from, e.to]) {
        const u = uses[index.get(id) ?? -1];
        if (u) [u.first, u.last] = [Math.min(u.first, step), Math.max(u.last, step)];
      }
    });
    return { ids, uses, allocation: allocateByLiveness(uses, this.entries.length) };
  }

  /** The virtual tensors leave tfjs's map: only the plan knows them now. */
  private forget(): void {
    for (const id of this.virtual) this.backend.tensorMap.delete(id);
  }

  private newVirtual(shape: number[], dtype: string): Info {
    const info = this.makeTensorInfo(shape, dtype);
    this.virtual.add(info.dataId);
    return info;
  }

  private data(id: DataId): TensorData {
    const d = this.backend.tensorMap.get(id);
    if (!d) throw new Error('the plan refers to a tensor that was disposed while recording');
    return d;
  }

  /** Runs `run` with tfjs's recordAndSubmit, tensor creation, upload and disposal intercepted. */
  private capture(label: string, run: () => Info): Info {
    if (this.recording) throw new Error('a plan records one kernel at a time');
    this.label = label;
    const b = this.backend;
    const saved = {
      makeTensorInfo: b.makeTensorInfo,
      uploadToGPU: b.uploadToGPU,
      disposeData: b.disposeData,
      recordAndSubmit: b.recordAndSubmit,
    };
    const ownBefore = Object.keys(saved).filter((key) => Object.hasOwn(b, key));
    this.recording = true;
    b.makeTensorInfo = (shape, dtype, values) => {
      if (values !== undefined)
        throw new Error('a recorded kernel made a constant: pass it with constant()');
      return this.newVirtual(shape, dtype);
    };
    b.uploadToGPU = (id) =>
      this.virtual.has(id) || this.options.measureOnly ? undefined : saved.uploadToGPU.call(b, id);
    b.disposeData = (id, force) =>
      this.virtual.has(id) ? true : saved.disposeData.call(b, id, force);
    b.recordAndSubmit = (program, output, inputs, uniforms) =>
      this.record(program as RecordedProgram, output, inputs, uniforms);
    try {
      return run();
    } finally {
      // Back to the prototype's methods, or to the instance's own where it had them.
      for (const key of Object.keys(saved) as (keyof typeof saved)[]) {
        if (ownBefore.includes(key)) Object.assign(b, { [key]: saved[key] });
        else delete (b as unknown as Record<string, unknown>)[key];
      }
      this.recording = false;
      // Submits the uploads of weights the kernel read for the first time (Dawn frees
      // their mapped memory at a submit; without one, a large model runs out).
      submitWebGpuQueue(b);
    }
  }

  private record(p: RecordedProgram, output: Info, inputs: Info[], own?: UniformField[]): void {
    if (p.pipeline instanceof Promise)
      throw new Error('a plan needs compiled pipelines (WEBGPU_ENGINE_COMPILE_ONLY is on)');
    const fields = programUniforms(
      p,
      inputs.map((i) => i.shape),
      output.shape,
      own,
    );
    this.entries.push({
      kind: 'dispatch',
      label: `${this.label} [${output.shape.join('x')}]`,
      pipeline: p.pipeline,
      dispatch: [...p.dispatch] as [number, number, number],
      ids: [output.dataId, ...inputs.map((i) => i.dataId)],
      uniforms: packUniforms(fields),
    });
  }
}
