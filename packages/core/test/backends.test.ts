// The backend switch: names, --gpu checks, what the worker reports as its
// device, the tensorflow backends' errors when tfjs-node is missing or broken
// (simulated here: it is not installed), and the webgpu backend end to end on
// Dawn's null adapter (every shader is validated; none runs, so values are
// meaningless) plus the error when no real adapter exists (these machines).
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  BACKENDS,
  BACKEND_DESCRIPTORS,
  GPU_BACKENDS,
  LoraLinear,
  backendDescriptor,
  TrainableParameters,
  deviceInfo,
  deviceName,
  listWebGpuAdapters,
  lossAndGradsAsync,
  releaseWebGpu,
  tf,
  useBackend,
  webGpuErrors,
} from '../src/index.js';
import {
  TFJS_NODE_PACKAGES,
  cudaDevicesFor,
  defaultResolver,
  explainLoadError,
  loadTfjsNode,
  resetTfjsNodeForTests,
} from '../src/backend/tfjs-node.js';
import { loadWebGpuKernels, webGpuDevice, webGpuSubmitBatch } from '../src/backend/webgpu.js';

const NULL_ADAPTER = ['backend=null'];

describe('backend names and --gpu', () => {
  it('offers the five backends', () => {
    expect(BACKENDS).toEqual(['wasm', 'cpu', 'webgpu', 'tensorflow', 'tensorflow-gpu']);
  });

  it('rejects unknown names and misplaced or malformed GPU indices', async () => {
    await expect(useBackend('cuda' as never)).rejects.toThrow(
      /unknown compute backend "cuda": choose one of wasm, cpu, webgpu, tensorflow, tensorflow-gpu/,
    );
    await expect(useBackend('wasm', { gpu: 0 })).rejects.toThrow(
      /--gpu 0 needs a GPU backend \(webgpu, tensorflow-gpu\), not wasm/,
    );
    await expect(useBackend('tensorflow', { gpu: 1 })).rejects.toThrow(/needs a GPU backend/);
    await expect(useBackend('webgpu', { gpu: -1 })).rejects.toThrow(/--gpu must be a GPU index/);
    await expect(useBackend('webgpu', { gpu: 1.5 })).rejects.toThrow(/--gpu must be a GPU index/);
  });

  it('reports the cpu as the device of cpu and wasm', async () => {
    for (const name of ['cpu', 'wasm'] as const) {
      await useBackend(name);
      expect(tf.getBackend()).toBe(name);
      expect(deviceName()).toBe('cpu');
      expect(deviceInfo()).toEqual({ backend: name, kind: 'cpu', name: 'cpu', index: null });
    }
  });
});

describe('backend descriptors', () => {
  it('one per backend: the names, the GPU list and the tfjs names come from them', () => {
    expect(BACKEND_DESCRIPTORS.map((d) => d.name)).toEqual([...BACKENDS]);
    expect(GPU_BACKENDS).toEqual(['webgpu', 'tensorflow-gpu']);
    expect(backendDescriptor('tensorflow-gpu').tfjsName).toBe('tensorflow');
    for (const d of BACKEND_DESCRIPTORS) {
      const t = d.tolerance;
      for (const v of [t.gradient, t.merge, t.pissa, t.training, t.loss])
        expect(v > 0 && v < 0.1).toBe(true);
    }
  });

  it('syncReads holds on cpu and wasm: a kernel output reads with dataSync', async () => {
    for (const name of ['cpu', 'wasm'] as const) {
      expect(backendDescriptor(name).syncReads).toBe(true);
      await useBackend(name);
      const y = tf.tidy(() => tf.matMul(tf.ones([3, 3]), tf.ones([3, 3])));
      expect(Array.from(y.dataSync())).toEqual(new Array(9).fill(3));
      y.dispose();
    }
  });
});

describe('tensorflow backends (tfjs-node, optional)', () => {
  const cuda = process.env.CUDA_VISIBLE_DEVICES;
  afterEach(async () => {
    resetTfjsNodeForTests();
    if (tf.findBackendFactory('tensorflow')) {
      await useBackend('wasm');
      tf.removeBackend('tensorflow');
    }
    if (cuda === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
    else process.env.CUDA_VISIBLE_DEVICES = cuda;
  });

  it('says what to install when the package is absent', async () => {
    for (const variant of ['tensorflow', 'tensorflow-gpu'] as const) {
      // Absent whatever this machine has installed: the resolver finds nothing.
      const error = await loadTfjsNode(variant, undefined, () => undefined).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toContain(
        `${TFJS_NODE_PACKAGES[variant]}@4.22.0, which is not installed`,
      );
      expect(error?.message).toContain('downloads libtensorflow');
      if (variant === 'tensorflow-gpu') expect(error?.message).toMatch(/CUDA 11\.2 and cuDNN 8\.1/);
    }
  });

  it('on this machine: runs on tfjs-node where it loads, else explains why not', async () => {
    for (const variant of ['tensorflow', 'tensorflow-gpu'] as const) {
      resetTfjsNodeForTests();
      const installed = defaultResolver(TFJS_NODE_PACKAGES[variant]) !== undefined;
      const error = await useBackend(variant).then(
        () => undefined,
        (e: Error) => e,
      );
      if (error === undefined) {
        // It loaded: the backend is really tfjs-node's, and it computes.
        expect(installed).toBe(true);
        expect(tf.getBackend()).toBe('tensorflow');
        const product = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
        expect(Array.from(await product.data())).toEqual([11]);
        product.dispose();
        await useBackend('wasm');
        tf.removeBackend('tensorflow');
      } else if (!installed) {
        expect(error.message).toContain(
          `${TFJS_NODE_PACKAGES[variant]}@4.22.0, which is not installed`,
        );
      } else {
        // Installed but not loadable here (no binding, no CUDA): one of the explained causes.
        expect(error.message).toMatch(
          /native binding is missing|cannot load the CUDA libraries|cannot load libtensorflow|failed to load|already loaded in this process/,
        );
      }
    }
  });

  it('names the missing piece when the package is there but does not load', () => {
    const cases: [string, RegExp][] = [
      [
        "Cannot find module '/x/node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node'",
        /installed but its native binding is missing.*npm rebuild @tensorflow\/tfjs-node/,
      ],
      [
        'libcudart.so.11.0: cannot open shared object file: No such file or directory',
        /cannot load the CUDA libraries it was built for \(CUDA 11\.2, cuDNN 8\.1\)/,
      ],
      [
        'libtensorflow.so.2: cannot open shared object file',
        /cannot load libtensorflow.*npm rebuild/,
      ],
      ['something else', /failed to load: something else/],
    ];
    for (const [message, expected] of cases) {
      expect(explainLoadError('tensorflow-gpu', new Error(message)).message).toMatch(expected);
    }
  });

  it('restores CUDA_VISIBLE_DEVICES after a failed load and explains the failure', async () => {
    process.env.CUDA_VISIBLE_DEVICES = '2,3';
    await expect(
      loadTfjsNode(
        'tensorflow-gpu',
        1,
        () => '/fake/tfjs-node-gpu/index.js',
        async () => {
          expect(process.env.CUDA_VISIBLE_DEVICES).toBe('3');
          throw new Error('libcudnn.so.8: cannot open shared object file');
        },
      ),
    ).rejects.toThrow(/CUDA libraries/);
    expect(process.env.CUDA_VISIBLE_DEVICES).toBe('2,3');
  });

  it('maps --gpu through CUDA_VISIBLE_DEVICES', () => {
    expect(cudaDevicesFor(1, undefined)).toBe('1');
    expect(cudaDevicesFor(0, '')).toBe('0');
    expect(cudaDevicesFor(1, '4, 6')).toBe('6');
    expect(() => cudaDevicesFor(2, '4,6')).toThrow(/makes only 2 GPU\(s\) visible/);
  });

  it('runs on the package once it registers the tensorflow backend', async () => {
    delete process.env.CUDA_VISIBLE_DEVICES;
    // A stand-in for tfjs-node-gpu: registers 'tensorflow' as the real one does.
    const Cpu = tf.findBackend('cpu').constructor as new () => tf.KernelBackend;
    let seen: string | undefined;
    await loadTfjsNode(
      'tensorflow-gpu',
      1,
      () => '/fake/tfjs-node-gpu/index.js',
      async () => {
        seen = process.env.CUDA_VISIBLE_DEVICES;
        tf.registerBackend('tensorflow', () => new Cpu(), 0);
      },
    );
    expect(seen).toBe('1');
    await useBackend('tensorflow-gpu', { gpu: 1 }); // already loaded: no second import
    expect(tf.getBackend()).toBe('tensorflow');
    expect(deviceName()).toBe('gpu 1: CUDA (tfjs-node-gpu)');
    await expect(loadTfjsNode('tensorflow')).rejects.toThrow(/already loaded in this process/);
    await expect(loadTfjsNode('tensorflow-gpu', 0)).rejects.toThrow(
      /already uses CUDA_VISIBLE_DEVICES=1/,
    );
  });

  it('refuses a package that registers no backend with this tfjs', async () => {
    await expect(
      loadTfjsNode(
        'tensorflow',
        undefined,
        () => '/fake/index.js',
        async () => {},
      ),
    ).rejects.toThrow(/registered no 'tensorflow' backend with this project's tfjs \(4\.22\.0\)/);
  });
});

describe('webgpu adapter selection (Dawn)', () => {
  it('registers the webgpu kernels on import, without an adapter', async () => {
    expect(tf.findBackendFactory('webgpu')).toBeNull();
    await loadWebGpuKernels();
    expect(tf.getKernelsForBackend('webgpu').length).toBeGreaterThan(150);
    for (const name of ['BatchMatMul', 'UnsortedSegmentSum', 'Softmax', 'GatherV2', 'SplitV'])
      expect(tf.getKernel(name, 'webgpu'), name).toBeDefined();
    expect(tf.findBackendFactory('webgpu')).toBeNull(); // no navigator.gpu: no backend yet
  });

  it('lists the adapters of a Dawn backend', async () => {
    expect(await listWebGpuAdapters({ flags: NULL_ADAPTER })).toEqual([
      { index: 0, backend: 'null', name: 'Null backend' },
    ]);
  });

  it('fails clearly without a real adapter (CPU machines), or starts on one (GPU machines)', async () => {
    const real = await listWebGpuAdapters({ flags: [] });
    if (real.length === 0) {
      await expect(useBackend('webgpu', { dawnFlags: [] })).rejects.toThrow(
        /no WebGPU adapter found \(Dawn, its default backend\)\. (What this machine shows: .*\. )?On Linux Dawn drives the GPU through Vulkan/,
      );
      await expect(useBackend('webgpu', { gpu: 0, dawnFlags: [] })).rejects.toThrow(
        /no WebGPU adapter found/,
      );
    } else {
      await useBackend('webgpu', { gpu: 0, dawnFlags: [] });
      expect(deviceName()).toBe(`gpu 0: ${real[0]!.name}`);
      releaseWebGpu();
    }
    expect(webGpuDevice()).toBeUndefined();
  });
});

describe('webgpu backend on Dawn null adapter', () => {
  afterAll(async () => {
    await useBackend('wasm');
    releaseWebGpu();
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
  });

  it('refuses an adapter index that does not exist', async () => {
    await expect(useBackend('webgpu', { gpu: 1, dawnFlags: NULL_ADAPTER })).rejects.toThrow(
      /--gpu 1: there are 1 WebGPU adapter\(s\):\n {2}0: Null backend \(null\)/,
    );
  });

  it('starts on the chosen adapter and reports it as the device', async () => {
    await useBackend('webgpu', { gpu: 0, dawnFlags: NULL_ADAPTER });
    expect(tf.getBackend()).toBe('webgpu');
    expect(deviceName()).toBe('gpu 0: Null backend');
    expect(deviceInfo()).toMatchObject({ backend: 'webgpu', kind: 'gpu', index: 0 });
    // Selecting it again is a no-op; another GPU in the same process is not.
    await useBackend('webgpu');
    await expect(useBackend('webgpu', { gpu: 2, dawnFlags: NULL_ADAPTER })).rejects.toThrow(
      /already drives WebGPU adapter 0 \(Null backend\); one process uses one GPU/,
    );
  });

  it('submits 15 dispatches per command buffer (tfjs), or LORAFLEET_WEBGPU_SUBMIT_BATCH', async () => {
    await useBackend('webgpu');
    expect(tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE')).toBe(webGpuSubmitBatch());
    expect(webGpuSubmitBatch({})).toBe(15);
    expect(webGpuSubmitBatch({ LORAFLEET_WEBGPU_SUBMIT_BATCH: ' 64 ' })).toBe(64);
    for (const bad of ['0', '-3', '2.5', 'many'])
      expect(() => webGpuSubmitBatch({ LORAFLEET_WEBGPU_SUBMIT_BATCH: bad })).toThrow(
        new RegExp(`LORAFLEET_WEBGPU_SUBMIT_BATCH=${bad}: expected a whole number`),
      );
  });

  it('reads GPU tensors asynchronously only, with a clear error for dataSync', async () => {
    expect(backendDescriptor('webgpu').syncReads).toBe(false);
    await useBackend('webgpu');
    const x = tf.tidy(() => tf.matMul(tf.ones([40, 40]), tf.ones([40, 40]))); // on the GPU
    expect(() => x.dataSync()).toThrow(
      /cannot read a tensor that lives on the GPU.*await tensor\.data\(\)/,
    );
    expect((await x.data()).length).toBe(1600);
    // Values still on the CPU side (not yet uploaded) read synchronously as before.
    const y = tf.tensor([1, 2, 3]);
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    tf.dispose([x, y]);
  });

  it('runs a LoRA training step: every shader is valid WGSL and no tensor leaks', async () => {
    await useBackend('webgpu');
    tf.env().set('WEBGPU_CPU_FORWARD', false); // small shapes too go to the GPU
    const weight = tf.randomNormal([48, 40]) as tf.Tensor2D;
    const layer = new LoraLinear({ name: 'h.0.attn.c_attn', weight, fanInFanOut: true });
    weight.dispose();
    layer.addAdapter(
      'default',
      { r: 4, alpha: 8, dropout: 0.1, rslora: false },
      { kind: 'kaiming' },
      1,
    );
    const params = TrainableParameters.fromLoraLayers([layer]);
    const x = tf.randomNormal([16, 48]);
    const step = () =>
      lossAndGradsAsync(params, () =>
        tf.sum(tf.square(layer.forward(x, { training: true, dropoutSeed: 3 }))),
      );
    const first = await step();
    expect(first.grads.length).toBe(params.size);
    const before = tf.memory().numTensors;
    await step();
    expect(tf.memory().numTensors).toBe(before);
    expect(webGpuErrors()).toEqual([]);
    // The check is not vacuous: a broken shader does show up there.
    const device = (tf.backend() as unknown as { device: { createShaderModule(d: object): void } })
      .device;
    device.createShaderModule({ code: 'fn main() { let x: f32 = 1u; }' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(webGpuErrors().join('\n')).toMatch(/cannot initialize 'let' of type 'f32'/);
    tf.env().set('WEBGPU_CPU_FORWARD', true);
    x.dispose();
    layer.dispose();
  });
});
