// The GPU check's summary (gpu.mjs report): reads what the phases of
// test/gpu/run.sh wrote into the work folder and says it in lines: device,
// parity, gradients, throughput against PyTorch + PEFT (the RATIO line),
// memory, and the kernel benchmark.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined);

/** Peak and baseline of an nvidia-smi memory.used log (MiB, one number a line). */
function smiPeak(file) {
  if (!existsSync(file)) return null;
  const mib = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => Number.parseFloat(l))
    .filter(Number.isFinite);
  if (mib.length === 0) return null;
  return { baselineMiB: mib[0], peakMiB: Math.max(...mib), samples: mib.length };
}

const fmt = (x, digits = 2) =>
  typeof x === 'number' && Number.isFinite(x) ? x.toExponential(digits) : 'n/a';
const gib = (bytes) => (typeof bytes === 'number' ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : 'n/a');

/** The adapter's features that kernels could use (subgroups, f16), as gpu.mjs adapters found them. */
function capabilityLines(c) {
  if (!c) return [];
  const wanted = ['subgroups', 'subgroup-size-control', 'shader-f16', 'timestamp-query'];
  const has = wanted.filter((f) => c.features.includes(f));
  const sizes = c.subgroupSizes.every((x) => typeof x === 'number')
    ? c.subgroupSizes.join('-')
    : 'n/a';
  return [`features: ${has.join(', ') || 'none of ' + wanted.join(', ')}; subgroup sizes ${sizes}`];
}

/** The device-select layer on this driver (device-layer.mjs): opened, computed, its PCI address. */
function deviceLayerLines(d) {
  if (!d) return [];
  if (d.before.length === 0) return ['device layer: not tried (no adapter)'];
  const where = d.report?.pci ? `PCI ${d.report.pci}` : 'no PCI address';
  return [
    d.ok
      ? `device layer: ok (${d.device}; ${where}; matmul error ${d.matmulMaxAbsError.toExponential(1)})`
      : `device layer: FAILED ${JSON.stringify(d.errors)}; ${d.after.length} adapter(s) through it`,
  ];
}

/** Everything the phases left in `work`, and `summary`: the lines the check prints. */
export function summarize(work) {
  const r = collect(work);
  const device = r.adapters?.device;
  const lines = [
    `device: ${device ? `${device.name} (${device.adapter?.description || device.adapter?.vendor || ''})` : `none (${r.adapters?.errors?.start ?? 'no adapters.json'})`}`,
    ...capabilityLines(r.adapters?.capabilities),
    ...deviceLayerLines(r.deviceLayer),
    ...r.phases.map(
      (p) => `phase ${p.phase}: ${p.rc === 0 ? 'ok' : `FAILED (exit ${p.rc})`} in ${p.seconds}s`,
    ),
    ...correctnessLines(r),
    ...throughputLines(r),
    ...kernelLines(r),
    ...noRobustLines(r),
    ...profileLines(r),
  ];
  const { project: p, torch: t } = r.throughput;
  if (p && t) {
    r.ratio = p.tokensPerSecond / t.tokensPerSecond;
    lines.push(
      `RATIO tokens/s project ${p.backend} / torch+peft = ${r.ratio.toFixed(3)} (GPT-2 small shape, LoRA r=8 c_attn, B=${p.batch} T=${p.seqLen}, AdamW, fp32, ${device?.name ?? 'same GPU'})`,
    );
  }
  r.summary = lines;
  return r;
}

/** The files of `work`, read (undefined where a phase wrote nothing). */
function collect(work) {
  const phases = existsSync(join(work, 'phases.jsonl'))
    ? readFileSync(join(work, 'phases.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
  return {
    phases,
    adapters: readJson(join(work, 'adapters.json')),
    deviceLayer: readJson(join(work, 'device-layer.json')),
    parity: readJson(join(work, 'parity.json')),
    families: readJson(join(work, 'families', 'families.json')),
    nodeLogits: Object.fromEntries(
      ['webgpu', 'wasm'].map((b) => [b, readJson(join(work, `logits-${b}`, 'meta.json')) ?? null]),
    ),
    adapter: readJson(join(work, 'adapter', 'adapter.json')),
    grads: readJson(join(work, 'grads.json')),
    throughput: {
      project: readJson(join(work, 'throughput-project.json')),
      stock: readJson(join(work, 'throughput-project-stock.json')),
      tape: readJson(join(work, 'throughput-project-tape.json')),
      norobust: readJson(join(work, 'throughput-project-norobust.json')),
      torch: readJson(join(work, 'throughput-torch.json')),
    },
    kernelBench: readJson(join(work, 'kernel-bench.json')),
    kernelBenchNoRobust: readJson(join(work, 'kernel-bench-norobust.json')),
    profile: readJson(join(work, 'profile.json')),
    profileScheduled: readJson(join(work, 'profile-scheduled.json')),
    tileTable: readJson(join(work, 'tile-table.json')),
    smi: {
      project: smiPeak(join(work, 'smi-project.csv')),
      tape: smiPeak(join(work, 'smi-project-tape.csv')),
      torch: smiPeak(join(work, 'smi-torch.csv')),
    },
  };
}

/** Parity with transformers and PEFT, and gradients against wasm. */
function correctnessLines(r) {
  const lines = [];
  if (r.parity) {
    for (const [k, v] of Object.entries(r.parity.logits ?? {}))
      lines.push(
        `logits vs transformers (float64, tiny GPT-2) on ${k}: max|diff| ${fmt(v.maxAbsDiff)} (relative ${fmt(v.relative)})`,
      );
    for (const [k, v] of Object.entries(r.parity.peft ?? {}))
      lines.push(
        `PEFT adapter (${r.adapter?.via ?? '?'}) loaded by peft vs the project on ${k}: max|diff| ${fmt(v.maxAbsDiff)}; adapter effect ${fmt(r.parity.adapterEffect)}`,
      );
    for (const [k, v] of Object.entries(r.parity.peftDora ?? {}))
      lines.push(
        `DoRA adapter (use_dora) loaded by peft vs the project on ${k}: max|diff| ${fmt(v.maxAbsDiff)}; adapter effect ${fmt(r.parity.doraEffect)}`,
      );
    if (r.parity.doraError)
      lines.push(`DoRA adapter: peft could not load it: ${r.parity.doraError}`);
  }
  for (const [name, v] of Object.entries(r.families ?? {})) {
    if (typeof v !== 'object' || v === null) continue; // the versions
    for (const backend of ['webgpu', 'wasm'].filter((b) => v[b]))
      lines.push(
        `logits vs transformers ${r.families.transformers} (float64, tiny ${name}) on ${backend}: max|diff| ${fmt(v[backend].maxAbsDiff)} (relative ${fmt(v[backend].relative)})`,
      );
    for (const backend of ['webgpu', 'wasm'].filter((b) => v[`${b}Peft`]))
      lines.push(
        `${name} with its lorafleet train adapter vs peft ${r.families.peft} on ${backend}: relative ${fmt(v[`${backend}Peft`].relative)}; adapter effect ${fmt(v.adapterEffect)}`,
      );
    if (v.mergedVsPeft)
      lines.push(
        `${name} merged by lorafleet merge, in transformers vs peft: relative ${fmt(v.mergedVsPeft.relative)}`,
      );
  }
  if (r.grads) {
    for (const kind of ['lora', 'full'])
      lines.push(
        `gradients ${r.grads.backend} vs wasm (${kind}, ${r.grads[kind].parameters} parameters): max|diff| ${fmt(r.grads[kind].maxAbsDiff)} (relative ${fmt(r.grads[kind].relative)})`,
      );
  }
  return lines;
}

/** Tokens/s and memory: the project, PyTorch + PEFT, and the stock-kernel "before". */
function throughputLines(r) {
  const lines = [];
  const { project: p, torch: t, stock: st, tape } = r.throughput;
  const path = (x) => x.gradients?.path ?? 'tape';
  const plan = (x) => (x.planBytes ? `, plan buffers ${gib(x.planBytes)}` : '');
  if (p)
    lines.push(
      `project ${p.backend}: ${p.tokensPerSecond.toFixed(0)} tokens/s (gradients: ${path(p)}), median step ${p.medianStepSeconds.toFixed(3)} s over ${p.steps} steps, tfjs GPU allocation ${gib(p.tfjsGpuBytesAllocated)}${plan(p)}`,
    );
  if (tape && t)
    lines.push(
      `project ${tape.backend} on tfjs's tape (LORAFLEET_WEBGPU_STEP=tape): ${tape.tokensPerSecond.toFixed(0)} tokens/s, RATIO ${(tape.tokensPerSecond / t.tokensPerSecond).toFixed(3)}, tfjs GPU allocation ${gib(tape.tfjsGpuBytesAllocated)}`,
    );
  if (r.throughput.norobust && t) {
    const nr = r.throughput.norobust;
    lines.push(
      `project ${nr.backend} with Dawn's robustness off (disable_robustness): ${nr.tokensPerSecond.toFixed(0)} tokens/s (gradients: ${path(nr)}), RATIO ${(nr.tokensPerSecond / t.tokensPerSecond).toFixed(3)}`,
    );
  }
  if (t)
    lines.push(
      `torch ${t.torch} + peft ${t.peft} fp32 (${t.attention}): ${t.tokensPerSecond.toFixed(0)} tokens/s, median step ${t.medianStepSeconds.toFixed(3)} s, max_memory_allocated ${gib(t.maxMemoryAllocated)}`,
    );
  const mem = (s) => (s ? `${((s.peakMiB - s.baselineMiB) / 1024).toFixed(2)} GiB` : 'n/a');
  if (r.smi.project || r.smi.torch)
    lines.push(
      `peak GPU memory (nvidia-smi, above idle): project ${mem(r.smi.project)}, project on the tape ${mem(r.smi.tape)}, torch ${mem(r.smi.torch)}`,
    );
  if (st && t)
    lines.push(
      `before (LORAFLEET_WEBGPU_KERNELS=stock: tfjs matmul, unfused LoRA): ${st.tokensPerSecond.toFixed(0)} tokens/s, RATIO ${(st.tokensPerSecond / t.tokensPerSecond).toFixed(3)}, tfjs GPU allocation ${gib(st.tfjsGpuBytesAllocated)}`,
    );
  return lines;
}

/** The kernel benchmark with Dawn's robustness off against the same with it on. */
function noRobustLines(r) {
  const [on, off] = [r.kernelBench, r.kernelBenchNoRobust];
  if (!on || !off) return [];
  const lines = off.matmuls.map((k, i) => {
    const tflops = (x) => (k.flops / x) * 1e-12;
    const peak = off.peakTflops
      ? ` (${((100 * tflops(k.project)) / off.peakTflops).toFixed(1)}% of fp32 peak)`
      : '';
    return `kernel ${k.name} with robustness off: ${tflops(k.project).toFixed(2)} TFLOP/s${peak}, on ${tflops(on.matmuls[i].project).toFixed(2)}`;
  });
  if (off.attention && on.attention)
    lines.push(
      `kernel fused causal attention with robustness off: ${(off.attention.fused * 1e3).toFixed(2)} ms, on ${(on.attention.fused * 1e3).toFixed(2)} ms`,
    );
  return lines;
}

/** The kernel benchmark (kernel-bench.json) and the tile table the sweep wrote. */
function kernelLines(r) {
  const lines = [];
  for (const k of r.kernelBench?.matmuls ?? [])
    lines.push(
      `kernel ${k.name} [${k.batch}x${k.m}x${k.k}x${k.n}] tile ${k.tile}: ${((k.flops / k.project) * 1e-12).toFixed(2)} TFLOP/s` +
        (r.kernelBench.peakTflops
          ? ` (${((100 * k.flops) / k.project / (r.kernelBench.peakTflops * 1e12)).toFixed(1)}% of fp32 peak)`
          : '') +
        `, stock ${((k.flops / k.stock) * 1e-12).toFixed(2)}, ratio ${(k.stock / k.project).toFixed(2)}x`,
    );
  for (const k of (r.kernelBench?.matmuls ?? []).filter((row) => row.form && row.tiled))
    lines.push(
      `kernel rank-sized ${k.name}: ${k.form} kernel ${(k.project * 1e3).toFixed(3)} ms (${(k.bytes / k.project / 1e9).toFixed(0)} GB/s) vs tiled ${(k.tiled * 1e3).toFixed(3)} ms, ratio ${(k.tiled / k.project).toFixed(2)}x`,
    );
  if (r.kernelBench?.headGradient) {
    const h = r.kernelBench.headGradient;
    lines.push(
      `kernel LM head gradient [${h.n}, ${h.v}] x [${h.v}, ${h.c}]: padded rows (vec4) ${((h.flops / h.strided) * 1e-12).toFixed(2)} TFLOP/s vs unpadded ${((h.flops / h.plain) * 1e-12).toFixed(2)}, ratio ${(h.plain / h.strided).toFixed(2)}x`,
    );
  }
  if (r.kernelBench?.loraLinear) {
    const l = r.kernelBench.loraLinear;
    lines.push(
      `kernel fused LoRA linear fwd+bwd: ${(l.fused * 1e3).toFixed(2)} ms vs stock unfused ${(l.stock * 1e3).toFixed(2)} ms, ratio ${(l.stock / l.fused).toFixed(2)}x`,
    );
  }
  if (r.kernelBench?.crossEntropy) {
    const x = r.kernelBench.crossEntropy;
    lines.push(
      `kernel fused softmax cross-entropy [${x.n}, ${x.v}] fwd+bwd: ${(x.fused * 1e3).toFixed(2)} ms vs stock ${(x.stock * 1e3).toFixed(2)} ms, ratio ${(x.stock / x.fused).toFixed(2)}x`,
    );
  }
  if (r.kernelBench?.layerNorm) {
    const x = r.kernelBench.layerNorm;
    lines.push(
      `kernel fused layernorm [${x.n}, ${x.c}] fwd+bwd: ${(x.fused * 1e3).toFixed(2)} ms vs stock ${(x.stock * 1e3).toFixed(2)} ms, ratio ${(x.stock / x.fused).toFixed(2)}x`,
    );
  }
  for (const a of r.kernelBench?.activations ?? [])
    lines.push(
      `kernel fused ${a.name} [${a.n}, ${a.f}] fwd+bwd: ${(a.fused * 1e3).toFixed(2)} ms vs stock ${(a.stock * 1e3).toFixed(2)} ms, ratio ${(a.stock / a.fused).toFixed(2)}x`,
    );
  if (r.kernelBench?.attention) {
    const a = r.kernelBench.attention;
    lines.push(
      `kernel fused causal attention [${a.shape}] fwd+bwd: ${(a.fused * 1e3).toFixed(2)} ms vs stock ${(a.stock * 1e3).toFixed(2)} ms, ratio ${(a.stock / a.fused).toFixed(2)}x; peak tfjs bytes ${gib(a.fusedPeak)} vs ${gib(a.stockPeak)}`,
    );
  }
  for (const k of (r.kernelBench?.matmuls ?? []).filter((m) => m.splits > 1))
    lines.push(
      `kernel split-k ${k.name}: ${k.splits} chunks ${(k.project * 1e3).toFixed(3)} ms vs unsplit ${(k.unsplit * 1e3).toFixed(3)} ms, ratio ${(k.unsplit / k.project).toFixed(2)}x`,
    );
  const torchTflops = r.throughput.torch?.matmul4096Tflops;
  if (torchTflops)
    lines.push(
      `torch fp32 (no TF32) matmul 4096^3 on the same card: ${torchTflops.toFixed(2)} TFLOP/s` +
        (r.kernelBench?.peakTflops
          ? ` (${((100 * torchTflops) / r.kernelBench.peakTflops).toFixed(1)}% of fp32 peak)`
          : ''),
    );
  if (r.tileTable) lines.push(`tile table: ${r.tileTable.source} (work/tile-table.json)`);
  return lines;
}

/** Where one step's time goes (profile.json): GPU time per kernel against wall time. */
function profileLines(r) {
  return [...tapeProfileLines(r.profile), ...scheduledProfileLines(r.profileScheduled)];
}

/** The hand-scheduled step's profile (profile-scheduled.json). */
function scheduledProfileLines(p) {
  if (!p) return [];
  const share = (ms) => `${((100 * ms) / p.kernelMs).toFixed(1)}%`;
  return [
    `profile (scheduled): one step ${p.wallMs.toFixed(1)} ms wall, ${p.kernelMs.toFixed(1)} ms of GPU time in ${p.kernels} dispatches (${((100 * p.kernelMs) / p.wallMs).toFixed(0)}% of wall), plan buffers ${gib(p.planBytes)}`,
    ...p.byKernel
      .slice(0, 12)
      .map(
        (e) =>
          `profile (scheduled) kernel ${e.key}: ${e.ms.toFixed(2)} ms (${share(e.ms)}) in ${e.count}`,
      ),
    ...p.byShape
      .slice(0, 12)
      .map(
        (e) =>
          `profile (scheduled) shape ${e.key}: ${e.ms.toFixed(2)} ms (${share(e.ms)}) in ${e.count}`,
      ),
  ];
}

/** The tape's profile (profile.json). */
function tapeProfileLines(p) {
  if (!p) return [];
  const share = (ms) => `${((100 * ms) / p.kernelMs).toFixed(1)}%`;
  return [
    `profile: one step ${p.wallMs.toFixed(1)} ms wall, ${p.kernelMs.toFixed(1)} ms of GPU time in ${p.kernels} kernels (${((100 * p.kernelMs) / p.wallMs).toFixed(0)}% of wall)`,
    ...(p.submitBatches ?? []).map(
      (v) =>
        `profile submit every ${v.submitBatch} dispatches: encode ${v.encodeMs.toFixed(1)} ms (CPU), then wait ${v.waitMs.toFixed(1)} ms (GPU)`,
    ),
    ...p.byKernel
      .slice(0, 12)
      .map(
        (e) =>
          `profile kernel ${e.key}: ${e.ms.toFixed(2)} ms (${share(e.ms)}) in ${e.count} calls${e.programs.length ? ` [${e.programs.join(' ')}]` : ''}`,
      ),
    ...p.byShape
      .slice(0, 12)
      .map(
        (e) => `profile shape ${e.key}: ${e.ms.toFixed(2)} ms (${share(e.ms)}) in ${e.count} calls`,
      ),
  ];
}
