// The two shapes the CPU-step benchmark measures, and the arithmetic of one
// LoRA step on them (what the roofline divides by).
//
// "tiny": the GPT-2 shape (4 layers x 256, 8 heads, vocab 4096,
// context 128), batch 8 x 128, LoRA r=8 on c_attn, no dropout.
// "default": the main job's model (packages/models/pretrained/default: vocab
// 257, context 256) and settings (apps/coordinator/main-job.json: 8 x 128,
// LoRA r=8 alpha 16 dropout 0.05 on c_attn and c_proj).
// "llama": a Llama of the same size (4 layers x 256, 8 query heads over 4
// key/value heads, SwiGLU 688 wide, vocab 4096, tied head), batch 8 x 128,
// LoRA r=8 on q_proj and v_proj (PEFT's default for Llama), no dropout.
export const SHAPES = {
  tiny: {
    layers: 4,
    width: 256,
    heads: 8,
    vocab: 4096,
    context: 128,
    batch: 8,
    seqLen: 128,
    lora: { r: 8, alpha: 16, dropout: 0, targets: ['c_attn'] },
  },
  default: {
    layers: 4,
    width: 256,
    heads: 8,
    vocab: 257,
    context: 256,
    batch: 8,
    seqLen: 128,
    lora: { r: 8, alpha: 16, dropout: 0.05, targets: ['c_attn', 'c_proj'] },
  },
  llama: {
    family: 'llama',
    layers: 4,
    width: 256,
    heads: 8,
    kvHeads: 4,
    intermediate: 688,
    vocab: 4096,
    context: 256,
    batch: 8,
    seqLen: 128,
    lora: { r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'v_proj'] },
  },
};

/** The linear layers of one block: [name, in, out] (GPT-2's Conv1D names, or Llama's). */
function blockLinears(s) {
  const C = s.width;
  if (s.family === 'llama') {
    const kv = (C / s.heads) * s.kvHeads;
    const F = s.intermediate;
    return [
      ['self_attn.q_proj', C, C],
      ['self_attn.k_proj', C, kv],
      ['self_attn.v_proj', C, kv],
      ['self_attn.o_proj', C, C],
      ['mlp.gate_proj', C, F],
      ['mlp.up_proj', C, F],
      ['mlp.down_proj', F, C],
    ];
  }
  return [
    ['attn.c_attn', C, 3 * C],
    ['attn.c_proj', C, C],
    ['mlp.c_fc', C, 4 * C],
    ['mlp.c_proj', 4 * C, C],
  ];
}

const targeted = (name, targets) => targets.some((t) => name === t || name.endsWith(`.${t}`));

/**
 * Multiply-add FLOPs (2 per MAC) of one training step, per token: the
 * forward pass, and a backward pass that needs dX of every frozen linear (not
 * dW), dA and dB of each adapter, both attention products' gradients and dX
 * of the tied head. Attention counts the full T x T products, as the kernels
 * compute them. Elementwise work (layernorm, gelu, softmax) is not counted.
 */
export function flopsPerToken(s) {
  const C = s.width;
  const T = s.seqLen;
  let forward = 0;
  let backward = 0;
  for (const [name, inF, outF] of blockLinears(s)) {
    forward += 2 * inF * outF;
    backward += 2 * inF * outF; // dX only: W is frozen
    if (targeted(name, s.lora.targets)) {
      const lora = 2 * s.lora.r * (inF + outF);
      forward += lora;
      backward += 2 * lora; // dX through B and A, plus dA and dB
    }
  }
  const attention = 2 * 2 * T * C; // Q K^T and P V, per token
  forward += attention;
  backward += 2 * attention;
  forward *= s.layers;
  backward *= s.layers;
  const head = 2 * C * s.vocab; // logits = h wte^T (both shapes tie the head); backward: dh only
  return forward + head + backward + head;
}
