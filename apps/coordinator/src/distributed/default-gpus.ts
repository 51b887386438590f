// `lorafleet train --workers N --backend webgpu` without --gpus: one worker
// per GPU, as a torchrun user expects, instead of all N on Dawn's default
// adapter. Software adapters (SwiftShader, lavapipe) are left out where there
// is a hardware one.
import { type BackendName, type WebGpuAdapterListing, listWebGpuAdapters } from '@lorafleet/core';
import type { TrainOptions } from '../training/train-spec.js';
import type { Membership } from './fleet.js';
import { gpusFrom } from './membership.js';

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|software|basic render/i;

/** The GPU of each of `workers` slots, taking the adapters in turn; [] (Dawn's default for all) with fewer than two. */
export function spreadOverGpus(list: readonly WebGpuAdapterListing[], workers: number): number[] {
  const hardware = list.filter((a) => !SOFTWARE.test(a.name));
  const usable = hardware.length > 0 ? hardware : list;
  if (usable.length < 2) return [];
  return Array.from({ length: workers }, (_, slot) => usable[slot % usable.length]!.index);
}

/**
 * Spawned webgpu workers' GPUs when --gpus is not given, and the line that
 * says so; [] where nothing is spread (one GPU, another backend, a listing
 * that fails: each worker then says itself what it found).
 */
export async function defaultGpus(
  membership: Membership,
  backend: BackendName,
): Promise<{ gpus: number[]; line?: string }> {
  if (membership.kind !== 'spawn' || membership.workers < 2 || backend !== 'webgpu') {
    return { gpus: [] };
  }
  const list = await listWebGpuAdapters().catch(() => []);
  const gpus = spreadOverGpus(list, membership.workers);
  if (gpus.length === 0) return { gpus };
  const shown = [...new Set(gpus)].map((i) => `${i}: ${list[i]!.name}`).join(', ');
  return {
    gpus,
    line: `gpus: ${gpus.join(',')}, one per worker in turn (${shown}); --gpus I,J,... chooses`,
  };
}

/** Spawned workers' GPUs: --gpus as given, else defaultGpus() and the line that says so. */
export async function spawnedGpus(
  o: TrainOptions,
  membership: Membership,
): Promise<{ gpus: number[]; line?: string }> {
  const chosen = gpusFrom(o, membership, o.backend);
  return chosen.length > 0 ? { gpus: chosen } : defaultGpus(membership, o.backend);
}
