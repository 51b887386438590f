// Every compute backend, in the order --help lists them (the first is the
// default). A new backend is one file next to this one and one entry here.
import { cpuBackend } from './cpu.js';
import type { BackendDescriptor } from './descriptor.js';
import { tensorflowGpuBackend } from './tensorflow-gpu.js';
import { tensorflowBackend } from './tensorflow.js';
import { wasmBackend } from './wasm.js';
import { webgpuBackend } from './webgpu.js';

export const BACKEND_DESCRIPTORS = [
  wasmBackend,
  cpuBackend,
  webgpuBackend,
  tensorflowBackend,
  tensorflowGpuBackend,
] as const;

export type BackendName = (typeof BACKEND_DESCRIPTORS)[number]['name'];

const byName = new Map<string, BackendDescriptor<BackendName>>(
  BACKEND_DESCRIPTORS.map((d) => [d.name, d]),
);

/** The descriptor of `name`, or an error that lists the known backends. */
export function backendDescriptor(name: string): BackendDescriptor<BackendName> {
  const found = byName.get(name);
  if (!found) {
    throw new Error(
      `unknown compute backend "${name}": choose one of ${BACKEND_DESCRIPTORS.map((d) => d.name).join(', ')}`,
    );
  }
  return found;
}

export {
  type BackendDescriptor,
  type BackendOptions,
  type ConformanceCheck,
  type ConformanceTolerance,
} from './descriptor.js';
