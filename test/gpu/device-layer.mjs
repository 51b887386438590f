// The device-select Vulkan layer on this machine's driver (gpu.mjs
// device-layer). A worker loads it only among identical GPUs, which a
// one-GPU machine lacks, so this loads it by hand for adapter 0, as such a
// worker would for the first of its name: Dawn must then list exactly that
// adapter, open it and compute on it, and the layer's report gives its PCI
// address (a real driver reports one; SwiftShader does not).
import {
  builtDeviceLayer,
  deviceLayerEnv,
  deviceLayerReportFile,
  deviceName,
  listWebGpuAdapters,
  takeDeviceLayerReport,
  tf,
  useBackend,
} from '../../packages/core/dist/src/index.js';
import { log, stop, writeJson } from './common.mjs';

/** max |A B - reference| of a 64 x 48 by 48 x 40 product computed on the GPU. */
async function matmulError() {
  const a = tf.randomUniform([64, 48], -1, 1, 'float32', 1);
  const b = tf.randomUniform([48, 40], -1, 1, 'float32', 2);
  const c = tf.matMul(a, b);
  const [x, y, got] = await Promise.all([a.data(), b.data(), c.data()]);
  tf.dispose([a, b, c]);
  let worst = 0;
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 40; j++) {
      let sum = 0;
      for (let k = 0; k < 48; k++) sum += x[i * 48 + k] * y[k * 40 + j];
      worst = Math.max(worst, Math.abs(sum - got[i * 40 + j]));
    }
  }
  return worst;
}

export async function deviceLayer(outFile) {
  const out = { built: builtDeviceLayer() ?? null, before: [], after: [], errors: {} };
  try {
    out.before = await listWebGpuAdapters();
  } catch (error) {
    out.errors.list = error.message;
  }
  if (out.built === null)
    out.errors.built = 'the layer is not built (scripts/build-vulkan-layer.mjs)';
  if (out.built !== null && out.before.length > 0) {
    const file = deviceLayerReportFile();
    const choice = { ordinal: 0, name: out.before[0].name };
    Object.assign(process.env, deviceLayerEnv(out.built, choice, file));
    try {
      out.after = await listWebGpuAdapters();
      await useBackend('webgpu');
      out.device = deviceName();
      out.matmulMaxAbsError = await matmulError();
      out.report = takeDeviceLayerReport(file) ?? null;
    } catch (error) {
      out.errors.open = error.message;
    }
    await stop();
  }
  out.ok = out.after.length === 1 && out.report?.ordinal === 0 && out.matmulMaxAbsError < 1e-3;
  log(
    `device layer: ${out.ok ? 'ok' : 'FAILED'}; ${out.before.length} adapter(s) before, ` +
      `${out.after.length} through the layer; report ${JSON.stringify(out.report ?? null)}; ` +
      `${JSON.stringify(out.errors)}`,
  );
  await writeJson(outFile, out);
}
