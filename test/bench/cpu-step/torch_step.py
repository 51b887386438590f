"""The PyTorch peer of run.mjs: the same LoRA step on one thread.

Frozen GPT-2 (pre-LayerNorm blocks, gelu_new, tied head) with LoRA on the
target Conv1D modules, or (shape family "llama") a frozen Llama (RMSNorm,
rotary embedding, grouped-query attention, SwiGLU, tied head) with LoRA on
the target linear layers; summed token NLL, backward, global-norm clip, AdamW
on the LoRA parameters only. Prints one JSON line: tokens/s (median of the
timed steps) and the BLAS library torch loaded.
  python3 torch_step.py SHAPE_JSON STEPS WARMUP
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)
torch.manual_seed(0)


class LoraAdapter(nn.Module):
    """LoRA's trained path: dropout(x) A^T B^T * alpha / r, B starting at zero."""

    def __init__(self, n_in, n_out, lora):
        super().__init__()
        r = lora["r"]
        self.a = nn.Parameter(torch.randn(r, n_in) / math.sqrt(n_in))
        self.b = nn.Parameter(torch.zeros(n_out, r))
        self.scaling = lora["alpha"] / r
        self.drop = nn.Dropout(lora["dropout"])

    def forward(self, x):
        return (self.drop(x) @ self.a.t() @ self.b.t()) * self.scaling


class LoraConv1D(nn.Module):
    """GPT-2's Conv1D (W stored [in, out]) with an optional LoRA adapter."""

    def __init__(self, n_in, n_out, lora):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02, requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(n_out), requires_grad=False)
        self.lora = LoraAdapter(n_in, n_out, lora) if lora else None

    def forward(self, x):
        y = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        y = y.reshape(*x.shape[:-1], -1)
        return y + self.lora(x) if self.lora else y


def targeted(name, targets):
    return any(name == t or name.endswith("." + t) for t in targets)


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        C, lora = s["width"], s["lora"]
        pick = lambda name: lora if targeted(name, lora["targets"]) else None
        self.heads = s["heads"]
        self.ln1 = nn.LayerNorm(C)
        self.c_attn = LoraConv1D(C, 3 * C, pick("attn.c_attn"))
        self.attn_proj = LoraConv1D(C, C, pick("attn.c_proj"))
        self.ln2 = nn.LayerNorm(C)
        self.c_fc = LoraConv1D(C, 4 * C, pick("mlp.c_fc"))
        self.mlp_proj = LoraConv1D(4 * C, C, pick("mlp.c_proj"))
        for p in list(self.ln1.parameters()) + list(self.ln2.parameters()):
            p.requires_grad_(False)

    def forward(self, x, mask):
        B, T, C = x.shape
        H = self.heads
        q, k, v = self.c_attn(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(C // H) + mask
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, s):
        super().__init__()
        C = s["width"]
        self.wte = nn.Parameter(torch.randn(s["vocab"], C) * 0.02, requires_grad=False)
        self.wpe = nn.Parameter(torch.randn(s["context"], C) * 0.01, requires_grad=False)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s["layers"]))
        self.ln_f = nn.LayerNorm(C)
        for p in self.ln_f.parameters():
            p.requires_grad_(False)

    def forward(self, ids):
        B, T = ids.shape
        x = self.wte[ids] + self.wpe[:T]
        mask = torch.triu(torch.full((T, T), -1e9), diagonal=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x) @ self.wte.t()  # [B, T, V]


class LoraLinear(nn.Module):
    """nn.Linear without bias (W stored [out, in]) with an optional LoRA adapter."""

    def __init__(self, n_in, n_out, lora):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02, requires_grad=False)
        self.lora = LoraAdapter(n_in, n_out, lora) if lora else None

    def forward(self, x):
        y = x @ self.weight.t()
        return y + self.lora(x) if self.lora else y


class RmsNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, s):
        super().__init__()
        C, F_, lora = s["width"], s["intermediate"], s["lora"]
        self.heads, self.kv_heads = s["heads"], s["kvHeads"]
        D = C // self.heads
        pick = lambda name: lora if targeted(name, lora["targets"]) else None
        self.norm1, self.norm2 = RmsNorm(C), RmsNorm(C)
        self.q = LoraLinear(C, C, pick("self_attn.q_proj"))
        self.k = LoraLinear(C, self.kv_heads * D, pick("self_attn.k_proj"))
        self.v = LoraLinear(C, self.kv_heads * D, pick("self_attn.v_proj"))
        self.o = LoraLinear(C, C, pick("self_attn.o_proj"))
        self.gate = LoraLinear(C, F_, pick("mlp.gate_proj"))
        self.up = LoraLinear(C, F_, pick("mlp.up_proj"))
        self.down = LoraLinear(F_, C, pick("mlp.down_proj"))

    def forward(self, x, mask, cos, sin):
        B, T, C = x.shape
        H, Hkv = self.heads, self.kv_heads
        D = C // H
        h = self.norm1(x)
        q = self.q(h).view(B, T, H, D).transpose(1, 2)  # [B, H, T, D]
        k = self.k(h).view(B, T, Hkv, D).transpose(1, 2)
        v = self.v(h).view(B, T, Hkv, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D) + mask
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(y)
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, s):
        super().__init__()
        C = s["width"]
        self.embed = nn.Parameter(torch.randn(s["vocab"], C) * 0.02, requires_grad=False)
        self.blocks = nn.ModuleList(LlamaBlock(s) for _ in range(s["layers"]))
        self.norm = RmsNorm(C)
        D = C // s["heads"]
        inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
        self.inv_freq = inv

    def forward(self, ids):
        B, T = ids.shape
        x = self.embed[ids]
        freqs = torch.outer(torch.arange(T).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # [T, D]
        cos, sin = emb.cos(), emb.sin()
        mask = torch.triu(torch.full((T, T), -1e9), diagonal=1)
        for block in self.blocks:
            x = block(x, mask, cos, sin)
        return self.norm(x) @ self.embed.t()  # [B, T, V]


def blas_library():
    """The BLAS shared object torch has loaded (OpenBLAS or the reference one)."""
    torch.randn(64, 64) @ torch.randn(64, 64)
    with open("/proc/self/maps") as maps:
        libs = {line.split()[-1] for line in maps if "blas" in line.lower()}
    return sorted(libs)


def main():
    s = json.loads(sys.argv[1])
    steps, warmup = int(sys.argv[2]), int(sys.argv[3])
    model = Llama(s) if s.get("family") == "llama" else Gpt2(s)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    B, T, V = s["batch"], s["seqLen"], s["vocab"]
    times = []
    for i in range(warmup + steps):
        ids = torch.randint(0, V, (B, T))
        t = time.perf_counter()
        logits = model(ids)
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="sum"
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    print(
        json.dumps(
            {
                "tokensPerSecond": B * T / median,
                "medianMs": median * 1000,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "blas": blas_library(),
                "trainable": sum(p.numel() for p in params),
            }
        )
    )


if __name__ == "__main__":
    main()
