// The project's matmul kernels on 'webgpu' (matmul-program.ts is the WGSL):
// - BatchMatMul, replacing tfjs-backend-webgpu's (every tf.matMul, and the
//   matmuls of BatchMatMul's gradient, which passes transpose flags instead
//   of transposing);
// - LoraFleetMatMul: the same program with alpha, a bias and the rank-r LoRA
//   epilogue, which the fused LoRA linear (lora/fused-linear.ts) dispatches.
// tfjs's own BatchMatMul stays registered as LoraFleetStockBatchMatMul: the
// fallback for what the program does not cover (non-float32, batch
// broadcasting other than 1 vs n, empty tensors), and the peer of the tests
// and the benchmark. Env LORAFLEET_WEBGPU_KERNELS=stock keeps tfjs's kernel.
import type { tf } from '../tf.js';
import { type MatMulSpec, matMulProgram } from './matmul-program.js';
import { kChunks, splitCount, sumPartialsProgram } from './split-k.js';
import { columnChunks, columnsProgram, rankForm, rowsProgram } from './rank-product.js';
import {
  DEFAULT_LIMITS,
  type MatMulTile,
  type TileLimits,
  chooseRule,
  chooseTile,
} from './tiles.js';

export const LORAFLEET_MATMUL = 'LoraFleetMatMul';
export const STOCK_BATCH_MATMUL = 'LoraFleetStockBatchMatMul';

export interface LoraFleetMatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  /** C = alpha * op(A) op(B) + bias + beta * H op(L) (+ the residual r [M, N]). */
  alpha: number;
  beta: number;
  /** L is stored [N, r] (true) or [r, N] (false). */
  transposeL: boolean;
  /**
   * Row strides (LoraFleetMatMul, unbatched, A untransposed): A stored
   * [M, lda] of which each row's first K values are read (K from B), and C
   * written into [M, ldc] (columns from N on untouched). 0: unpadded. The
   * hand-scheduled step pads the LM head's vocabulary to a multiple of 4 so
   * that its gradient product loads vec4.
   */
  lda?: number;
  ldc?: number;
}

/** LoraFleetMatMul's attributes, the unset ones as a plain product with the epilogue added (beta 1). */
export function loraFleetMatMulAttrs(attrs: Partial<LoraFleetMatMulAttrs>): LoraFleetMatMulAttrs {
  return { transposeA: false, transposeB: false, alpha: 1, beta: 1, transposeL: false, ...attrs };
}

type Info = tf.TensorInfo;

interface WebGpuBackendLike {
  runWebGPUProgram(
    program: object,
    inputs: Info[],
    dtype: 'float32',
    uniforms?: { type: 'int32' | 'float32'; data: number[] }[],
  ): Info;
  disposeData(dataId: object): void;
  device?: { limits?: Record<string, number> };
}

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}

type KernelFunc = (args: KernelArgs) => Info | Info[];

function limitsOf(backend: WebGpuBackendLike): TileLimits {
  const l = backend.device?.limits ?? {};
  return {
    maxInvocations: l.maxComputeInvocationsPerWorkgroup ?? DEFAULT_LIMITS.maxInvocations,
    maxWorkgroupStorage: l.maxComputeWorkgroupStorageSize ?? DEFAULT_LIMITS.maxWorkgroupStorage,
  };
}

const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

/** The 3-D view the program computes on, or null when it must fall back to tfjs's kernel. */
interface Dims {
  m: number;
  n: number;
  k: number;
  batchA: number;
  batchB: number;
  outShape: number[];
}

function dims(a: Info, b: Info, transposeA: boolean, transposeB: boolean, lda = 0): Dims | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return null;
  if (a.shape.length < 2 || b.shape.length < 2) return null;
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const [kb, n] = transposeB ? [bc, br] : [br, bc];
  // With a row stride, A's rows hold K = B's k values and padding.
  const [m, k] = transposeA ? [ac, ar] : [ar, lda > 0 && kb <= ac ? kb : ac];
  if (k !== kb) {
    throw new Error(
      `matMul: inner sizes ${k} and ${kb} of [${a.shape}] and [${b.shape}] ` +
        `(transposeA=${transposeA}, transposeB=${transposeB}) must match`,
    );
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const [batchA, batchB] = [size(outerA), size(outerB)];
  // The program indexes one batch dimension: equal outer dims, or one side unbatched.
  let outer: number[];
  if (outerA.join(',') === outerB.join(',')) outer = outerA;
  else if (batchA === 1 && outerA.length <= outerB.length) outer = outerB;
  else if (batchB === 1 && outerB.length <= outerA.length) outer = outerA;
  else return null;
  if (m * n * k * Math.max(batchA, batchB) === 0) return null;
  return { m, n, k, batchA, batchB, outShape: [...outer, m, n] };
}

/**
 * Runs the program; `extra` are the bias, H, L and residual inputs its spec names.
 * `chunk` (split-k): workgroup z computes k chunk z of the unbatched product
 * into [chunks, M, N].
 */
function run(
  backend: WebGpuBackendLike,
  a: Info,
  b: Info,
  d: Dims,
  attrs: LoraFleetMatMulAttrs,
  extra: { bias?: Info; h?: Info; l?: Info; r?: Info },
  chunk: { tile: MatMulTile; kChunk: number; chunks: number } | null = null,
): Info {
  const batch = chunk ? chunk.chunks : Math.max(d.batchA, d.batchB);
  const strideA = attrs.lda || d.k;
  const strideC = chunk ? d.n : attrs.ldc || d.n;
  const lora = extra.h && extra.l ? { transposeL: attrs.transposeL } : null;
  const rank = extra.h ? extra.h.shape[extra.h.shape.length - 1]! : 0;
  const spec: MatMulSpec = {
    tile: chunk?.tile ?? chooseTile(d.m, d.n, d.k, batch, limitsOf(backend)),
    transposeA: attrs.transposeA,
    transposeB: attrs.transposeB,
    vecA: (attrs.transposeA ? d.m : strideA) % 4 === 0,
    raggedA: !attrs.transposeA && strideA % 4 === 0 && d.k % 4 !== 0,
    vecB: (attrs.transposeB ? d.k : d.n) % 4 === 0,
    bias: extra.bias !== undefined,
    lora,
    residual: extra.r !== undefined,
  };
  const inputs = [
    ...[a, b, ...(extra.bias ? [extra.bias] : []), ...(lora ? [extra.h!, extra.l!] : [])],
    ...(extra.r ? [extra.r] : []),
  ];
  const uniforms = [
    { type: 'int32' as const, data: [d.m] },
    { type: 'int32' as const, data: [d.n] },
    { type: 'int32' as const, data: [d.k] },
    { type: 'int32' as const, data: [d.batchA] },
    { type: 'int32' as const, data: [d.batchB] },
    { type: 'int32' as const, data: [rank] },
    { type: 'float32' as const, data: [attrs.alpha] },
    { type: 'float32' as const, data: [attrs.beta] },
    { type: 'int32' as const, data: [chunk ? chunk.kChunk : d.k] },
    { type: 'int32' as const, data: [strideA] },
    { type: 'int32' as const, data: [strideC] },
  ];
  const out = backend.runWebGPUProgram(
    matMulProgram(spec, batch, d.m, d.n, strideC),
    inputs,
    'float32',
    uniforms,
  );
  // The program writes [batch, M, N]; give it the broadcast outer dims (same data).
  if (chunk) return { ...out, shape: [batch, d.m, d.n] };
  return { ...out, shape: strideC === d.n ? d.outShape : [d.m, strideC] };
}

/** alpha op(A) op(B) (+ bias), unbatched, as S k-chunks in one dispatch, then the partials summed (split-k.ts). */
function splitKProduct(
  backend: WebGpuBackendLike,
  operands: { a: Info; b: Info; bias?: Info },
  d: Dims,
  attrs: LoraFleetMatMulAttrs,
  tile: MatMulTile,
  splits: number,
): Info {
  const { a, b, bias } = operands;
  const chunk = { tile, ...kChunks(d.k, splits, tile) };
  const partials = run(backend, a, b, d, attrs, {}, chunk); // [S, M, N], each times alpha
  return sumPartials(backend, partials, d, bias);
}

/** The partials [chunks, M, N] summed in order (+ bias [N]) into [M, N] (split-k.ts's pass); frees them. */
function sumPartials(backend: WebGpuBackendLike, partials: Info, d: Dims, bias?: Info): Info {
  const chunks = partials.shape[0]!;
  const out = backend.runWebGPUProgram(
    sumPartialsProgram(chunks, d.m, d.n, bias !== undefined),
    [partials, ...(bias ? [bias] : [])],
    'float32',
    [
      { type: 'int32', data: [d.m * d.n] },
      { type: 'int32', data: [chunks] },
      { type: 'int32', data: [d.n] },
    ],
  );
  backend.disposeData(partials.dataId);
  return { ...out, shape: d.outShape };
}

/** alpha op(A) op(B) by a rank-sized kernel (rank-product.ts): the rows form, or the columns form and its chunks' sum. */
function rankProduct(
  backend: WebGpuBackendLike,
  a: Info,
  b: Info,
  d: Dims,
  attrs: LoraFleetMatMulAttrs,
  form: 'rows' | 'columns',
): Info {
  const sizes = [d.m, d.n, d.k].map((v) => ({ type: 'int32' as const, data: [v] }));
  const alpha = { type: 'float32' as const, data: [attrs.alpha] };
  if (form === 'rows') {
    const program = rowsProgram(d.m, d.n, d.k, attrs.transposeB);
    const out = backend.runWebGPUProgram(program, [a, b], 'float32', [...sizes, alpha]);
    return { ...out, shape: d.outShape };
  }
  const { kChunk, chunks } = columnChunks(d.m, d.n, d.k);
  const program = columnsProgram(d.m, d.n, chunks);
  const uniforms = [...sizes, alpha, { type: 'int32' as const, data: [kChunk] }];
  const partials = backend.runWebGPUProgram(program, [a, b], 'float32', uniforms);
  if (chunks === 1) return { ...partials, shape: d.outShape };
  return sumPartials(backend, { ...partials, shape: [chunks, d.m, d.n] }, d);
}

/**
 * A product without the LoRA term: a rank-sized kernel where one side of C
 * is rank-sized, split-k where splitCount says (bias added with the
 * partials), else one dispatch.
 */
function splittableProduct(
  backend: WebGpuBackendLike,
  operands: { a: Info; b: Info; bias?: Info },
  d: Dims,
  attrs: LoraFleetMatMulAttrs,
): Info {
  const batch = Math.max(d.batchA, d.batchB);
  const padded = (attrs.lda ?? 0) > 0 || (attrs.ldc ?? 0) > 0;
  const form = operands.bias || padded ? null : rankForm({ ...d, batch }, attrs);
  if (form) return rankProduct(backend, operands.a, operands.b, d, attrs, form);
  const rule = chooseRule(d.m, d.n, d.k, batch, limitsOf(backend));
  // C's padded rows are not split-k's partials layout: a product with ldc stays whole.
  const splittable = !(attrs.ldc ?? 0);
  const splits = splittable
    ? splitCount({ ...d, batch, ...attrs }, rule.tile, rule.splitTarget)
    : 1;
  if (splits > 1) return splitKProduct(backend, operands, d, attrs, rule.tile, splits);
  const { a, b, bias } = operands;
  return run(backend, a, b, d, attrs, { bias });
}

function batchMatMul(stock: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA = false, transposeB = false } = (args.attrs ?? {}) as {
      transposeA?: boolean;
      transposeB?: boolean;
    };
    const d = dims(a, b, transposeA, transposeB);
    if (d === null) return stock(args);
    const backend = args.backend as unknown as WebGpuBackendLike;
    const attrs = { transposeA, transposeB, alpha: 1, beta: 0, transposeL: false };
    return splittableProduct(backend, { a, b }, d, attrs);
  };
}

/** lda and ldc: only on an unbatched product with A untransposed, at least as long as the rows. */
function checkStrides(a: Info, attrs: LoraFleetMatMulAttrs): void {
  const { lda = 0, ldc = 0 } = attrs;
  if (lda === 0 && ldc === 0) return;
  if (a.shape.length !== 2 || attrs.transposeA)
    throw new Error(
      `${LORAFLEET_MATMUL}: lda/ldc need an unbatched A, untransposed, got [${a.shape}] (transposeA=${attrs.transposeA})`,
    );
  if (lda > 0 && lda !== a.shape[1])
    throw new Error(`${LORAFLEET_MATMUL}: lda ${lda} must be A's row length ${a.shape[1]}`);
}

function loraFleetMatMul(args: KernelArgs): Info {
  const { a, b, bias, h, l, r } = args.inputs as Record<string, Info | undefined>;
  const attrs = args.attrs as unknown as LoraFleetMatMulAttrs;
  checkStrides(a!, attrs);
  const d = dims(a!, b!, attrs.transposeA, attrs.transposeB, attrs.lda);
  if (d === null) {
    throw new Error(
      `${LORAFLEET_MATMUL}: needs non-empty float32 operands with matching batch dims, got ` +
        `[${a!.shape}] ${a!.dtype} and [${b!.shape}] ${b!.dtype}`,
    );
  }
  if (attrs.ldc && attrs.ldc < d.n)
    throw new Error(`${LORAFLEET_MATMUL}: ldc ${attrs.ldc} is shorter than C's ${d.n} columns`);
  if ((h === undefined) !== (l === undefined)) {
    throw new Error(`${LORAFLEET_MATMUL}: the LoRA epilogue needs both h [M, r] and l`);
  }
  if (h && (Math.max(d.batchA, d.batchB) !== 1 || h.shape[0] !== d.m)) {
    throw new Error(`${LORAFLEET_MATMUL}: h must be [${d.m}, r] and the product unbatched`);
  }
  if (bias && size(bias.shape) !== d.n) {
    throw new Error(`${LORAFLEET_MATMUL}: bias has ${size(bias.shape)} values, expected ${d.n}`);
  }
  if (r && (Math.max(d.batchA, d.batchB) !== 1 || size(r.shape) !== d.m * d.n || attrs.ldc)) {
    throw new Error(
      `${LORAFLEET_MATMUL}: the residual r must be [${d.m}, ${d.n}] of an unbatched product without ldc, got [${r.shape}]`,
    );
  }
  const backend = args.backend as unknown as WebGpuBackendLike;
  // Without the LoRA term or a residual (e.g. the LoRA backward's dA = dh^T x and dB = s dy^T h) k may split.
  if (!h && !r)
    return splittableProduct(backend, { a: a!, b: b!, ...(bias ? { bias } : {}) }, d, attrs);
  return run(backend, a!, b!, d, attrs, { bias, h, l, r });
}

export type WebGpuMatMulChoice = 'project' | 'stock';

type Api = Pick<typeof tf, 'registerKernel' | 'getKernel' | 'unregisterKernel'>;

let registered:
  | { api: Api; kernels: Record<WebGpuMatMulChoice, KernelFunc>; choice: WebGpuMatMulChoice }
  | undefined;

/** The matmul BatchMatMul runs on webgpu; undefined before the kernels are loaded. */
export function webGpuMatMulChoice(): WebGpuMatMulChoice | undefined {
  return registered?.choice;
}

function register(api: Api, kernelName: string, kernelFunc: KernelFunc): void {
  api.registerKernel({
    kernelName,
    backendName: 'webgpu',
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
}

/**
 * Which kernel answers BatchMatMul on webgpu from now on: the project's or
 * tfjs's stock one (the benchmark's peer, and LORAFLEET_WEBGPU_KERNELS=stock).
 * "stock" also turns the fused LoRA linear off (lora/fused-linear.ts).
 */
export function selectWebGpuMatMul(which: WebGpuMatMulChoice): void {
  if (!registered)
    throw new Error('load the webgpu kernels first (loadWebGpuKernels / useBackend)');
  const { api, kernels } = registered;
  if (!(which in kernels)) {
    throw new Error(`the webgpu matmul is "project" or "stock", got "${String(which)}"`);
  }
  api.unregisterKernel('BatchMatMul', 'webgpu');
  register(api, 'BatchMatMul', kernels[which]);
  registered.choice = which;
}

/** Registers the kernels (once tfjs-backend-webgpu has registered its own). */
export function registerWebGpuMatMul(api: Api, env: NodeJS.ProcessEnv = process.env): void {
  if (api.getKernel(STOCK_BATCH_MATMUL, 'webgpu') !== undefined) return;
  const stock = api.getKernel('BatchMatMul', 'webgpu');
  if (stock === undefined) throw new Error('tfjs-backend-webgpu registered no BatchMatMul kernel');
  const stockFunc = stock.kernelFunc as unknown as KernelFunc;
  register(api, STOCK_BATCH_MATMUL, stockFunc);
  register(api, LORAFLEET_MATMUL, loraFleetMatMul);
  registered = {
    api,
    kernels: { project: batchMatMul(stockFunc), stock: stockFunc },
    choice: 'stock',
  };
  const choice = env.LORAFLEET_WEBGPU_KERNELS ?? 'project';
  if (choice !== 'project' && choice !== 'stock') {
    throw new Error(
      `LORAFLEET_WEBGPU_KERNELS must be "project" (the project's WGSL matmul) or "stock" ` +
        `(tfjs-backend-webgpu's), got "${choice}"`,
    );
  }
  selectWebGpuMatMul(choice);
}
