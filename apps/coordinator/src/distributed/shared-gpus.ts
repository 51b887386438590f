// Two workers of one host on one GPU share it: each gets a fraction of its
// time and memory, so a run meant as one worker per GPU trains at the speed
// of one GPU. Nothing fails, so the coordinator says so when the ring forms
// (`lorafleet train --workers 8 --backend webgpu` without --gpus puts all
// eight on Dawn's default GPU).
import type { Member } from './roster.js';

/** One warning per GPU that several workers of one host compute on (a worker's Hello names its device). */
export function sharedGpuWarnings(members: readonly Pick<Member, 'name' | 'hello'>[]): string[] {
  const byGpu = new Map<string, { host: string; device: string; names: string[] }>();
  for (const { name, hello } of members) {
    // 'cpu', or 'gpu: NAME' (Dawn's default adapter), or 'gpu I: NAME (...)'.
    if (!hello?.device.startsWith('gpu')) continue;
    const key = JSON.stringify([hello.host, hello.device]);
    const group = byGpu.get(key) ?? { host: hello.host, device: hello.device, names: [] };
    group.names.push(name);
    byGpu.set(key, group);
  }
  return [...byGpu.values()]
    .filter(({ names }) => names.length > 1)
    .map(
      ({ host, device, names }) =>
        `${names.join(', ')} on ${host} all compute on "${device}": they share that GPU, ` +
        'each at a fraction of its speed and memory. Give each worker its own: --gpus 0,1,... ' +
        'with --workers N, `lorafleet-worker --gpu I` for a daemon, --local-rank under a ' +
        'launcher (`lorafleet-worker --list-gpus` lists the GPUs). If each of them sees a ' +
        'different GPU (a container or cgroup per GPU), this does not apply.',
    );
}
