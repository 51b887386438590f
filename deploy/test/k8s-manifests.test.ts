// Every manifest in deploy/k8s validated offline against the Kubernetes
// schemas (kubernetes-models), and the facts the launcher relies on checked:
// an Indexed Job whose pods find rank 0 through the headless Service.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigMap, PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from './run-helpers.js';

const DIR = join(REPO_ROOT, 'deploy', 'k8s');

/** The schema-checked model of each kind the manifests use. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Service': Service,
  'v1/Secret': Secret,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'batch/v1/Job': Job,
};

interface Manifest {
  file: string;
  doc: { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };
}

function manifests(): Manifest[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => {
        if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
        return { file, doc: d.toJS() as Manifest['doc'] };
      }),
    );
}

function validate({ file, doc }: Manifest): void {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) throw new Error(`${file}: no schema for ${doc.apiVersion} ${doc.kind}`);
  new Model(doc as never).validate();
}

describe('deploy/k8s manifests', () => {
  const all = manifests();

  it('are all valid Kubernetes objects', () => {
    expect(all.map((m) => m.file).sort()).toEqual([
      'config.yaml',
      'job-cpu.yaml',
      'job-gpu.yaml',
      'secret.yaml',
      'service.yaml',
      'volume.yaml',
    ]);
    for (const m of all) expect(() => validate(m), m.file).not.toThrow();
  });

  it("come with an image that asks the NVIDIA container toolkit for the Vulkan driver ('graphics')", () => {
    // Without 'graphics' the toolkit mounts no Vulkan driver and Dawn finds no adapter.
    const dockerfile = readFileSync(join(DIR, 'Dockerfile'), 'utf8');
    const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const caps = /^ENV NVIDIA_DRIVER_CAPABILITIES=(\S+)$/m.exec(final)?.[1];
    expect(caps?.split(',')).toEqual(expect.arrayContaining(['compute', 'utility', 'graphics']));
    expect(final).toMatch(/apt-get install .*libvulkan1/);
    // The build stage can build core's device-select layer (identical GPUs on one node).
    const build = dockerfile.slice(0, dockerfile.lastIndexOf('\nFROM '));
    expect(build).toMatch(/apt-get install .*gcc.*libvulkan-dev/);
  });

  it('the validator refuses a broken Job (so the check above means something)', () => {
    const job = structuredClone(all.find((m) => m.file === 'job-cpu.yaml')!);
    (job.doc.spec as { completions: unknown }).completions = 'four';
    expect(() => validate(job)).toThrow(/completions/);
  });

  it('run an Indexed Job whose pods reach rank 0 at <job>-0.<service>, with the keys and a GPU each', () => {
    const service = all.find((m) => m.doc.kind === 'Service')!.doc as never as Service;
    expect(service.spec!.clusterIP).toBe('None');
    for (const file of ['job-cpu.yaml', 'job-gpu.yaml']) {
      const job = all.find((m) => m.file === file)!.doc as never as Job;
      const spec = job.spec!;
      expect(spec.completionMode).toBe('Indexed');
      expect(spec.parallelism).toBe(spec.completions);
      const pod = spec.template.spec!;
      expect(pod.subdomain).toBe(service.metadata!.name);
      expect(service.spec!.selector).toEqual({
        'batch.kubernetes.io/job-name': job.metadata!.name,
      });
      const container = pod.containers[0]!;
      const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
      expect(env.LORAFLEET_COORDINATOR_HOST).toBe(
        `${job.metadata!.name}-0.${service.metadata!.name}`,
      );
      expect(Number(env.LORAFLEET_WORLD_SIZE)).toBe(spec.completions);
      expect(container.command).toEqual(
        expect.arrayContaining(['--launcher', 'k8s', '--curve-key']),
      );
      const secret = pod.volumes!.find((v) => v.secret)!.secret!.secretName;
      expect(secret).toBe(all.find((m) => m.doc.kind === 'Secret')!.doc.metadata.name);
      // Disruptions (preemption, eviction) resume from the SIGTERM checkpoint, uncounted.
      expect(spec.podFailurePolicy?.rules).toContainEqual({
        action: 'Ignore',
        onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }],
      });
      expect(pod.restartPolicy).toBe('Never'); // podFailurePolicy requires it
      const gpus = container.resources?.limits?.['nvidia.com/gpu'];
      expect(gpus).toBe(file === 'job-gpu.yaml' ? 1 : undefined);
    }
  });
});
