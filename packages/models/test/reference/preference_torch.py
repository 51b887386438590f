#!/usr/bin/env python3
"""The preference objectives' losses and LoRA gradients in PyTorch, independent
of the TypeScript code: a float64 GPT-2 (transformers' GPT2LMHeadModel math:
pre-LayerNorm blocks, Conv1D weights [in, out], gelu_new, causal attention, a
tied head) with PEFT's LoRA on its Conv1D layers (delta = x A^T B^T * alpha / r,
no dropout), each loss written from TRL's trainers, and the gradient from
torch's autograd. The reference model is the same model with the adapter off
(TRL's default for a PEFT model, `disable_adapter`).

  DPOTrainer.dpo_loss  sigmoid: -log sigmoid(beta h); ipo: (h - 1/(2 beta))^2 on
                       length-averaged log-probabilities; hinge: relu(1 - beta h);
                       h = (logp(c) - ref(c)) - (logp(r) - ref(r))
  ORPOTrainer          NLL(prompt + c) - beta log sigmoid(log odds(c) - log odds(r)),
                       the odds on the mean log-probabilities, log odds(p) = p - log(1 - e^p),
                       the NLL over the chosen prompt and response (TRL's)
  CPOTrainer simpo     -log sigmoid(beta (c - r) - simpo_gamma) + cpo_alpha * NLL(c)
  CPOTrainer sigmoid   -log sigmoid(beta (C - R)) + cpo_alpha * NLL(c), on the sums
                       (ipo: (c - r - 1/(2 beta))^2 on the means)

NLL(c) is the chosen response's mean token NLL per pair (TRL's batch-token mean
where every chosen response has one length). Losses are summed over pairs.

usage: preference_torch.py BASE_DIR ADAPTER_DIR CASES_JSON
  CASES_JSON: {"ids": [[...2T]], "labels": [[...2T]], "settings": [{kind, beta, ...}]}
  prints {"cases": [{"loss": x, "grads": {module: {"a": [...], "b": [...]}}}]}
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

# peft_merge.py (beside this file) reads safetensors into float64 numpy arrays.
from peft_merge import read_safetensors as read_numpy

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    return {name: torch.from_numpy(values) for name, values in read_numpy(path).items()}


def load_base(base_dir):
    config = json.load(open(os.path.join(base_dir, "config.json")))
    weights = read_safetensors(os.path.join(base_dir, "model.safetensors"))
    return config, {k.removeprefix("transformer."): v for k, v in weights.items()}


def load_adapter(adapter_dir):
    """Module path ("h.0.attn.c_attn") -> trainable (A [r, in], B [out, r]), and the scaling."""
    config = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    tensors = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    modules = {}
    for key, value in tensors.items():
        path, which = key.removeprefix("base_model.model.transformer.").rsplit(".lora_", 1)
        modules.setdefault(path, {})[which[0]] = value.clone().requires_grad_(True)
    return modules, config["lora_alpha"] / config["r"]


class Gpt2:
    def __init__(self, config, weights, modules, scaling):
        self.c, self.w, self.modules, self.scaling = config, weights, modules, scaling
        self.adapters_on = True

    def conv1d(self, x, path):
        y = x @ self.w[path + ".weight"] + self.w[path + ".bias"]
        lora = self.modules.get(path)
        if lora is None or not self.adapters_on:
            return y
        return y + (x @ lora["A"].t() @ lora["B"].t()) * self.scaling

    def layer_norm(self, x, path):
        eps = self.c.get("layer_norm_epsilon", 1e-5)
        return F.layer_norm(x, x.shape[-1:], self.w[path + ".weight"], self.w[path + ".bias"], eps)

    def attention(self, x, i):
        S, T, C = x.shape
        H = self.c["n_head"]
        q, k, v = self.conv1d(x, f"h.{i}.attn.c_attn").split(C, dim=2)
        heads = lambda t: t.reshape(S, T, H, C // H).transpose(1, 2)  # [S, H, T, D]
        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(S, T, C)
        return self.conv1d(out, f"h.{i}.attn.c_proj")

    def logits(self, ids):
        S, T = ids.shape
        x = self.w["wte.weight"][ids] + self.w["wpe.weight"][torch.arange(T)]
        for i in range(self.c["n_layer"]):
            x = x + self.attention(self.layer_norm(x, f"h.{i}.ln_1"), i)
            h = self.conv1d(self.layer_norm(x, f"h.{i}.ln_2"), f"h.{i}.mlp.c_fc")
            gelu_new = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
            x = x + self.conv1d(gelu_new, f"h.{i}.mlp.c_proj")
        return self.layer_norm(x, "ln_f") @ self.w["wte.weight"].t()


def logps(model, ids, labels):
    """Each sequence's summed and mean log-probability over its labelled tokens (TRL's
    get_batch_logps), and its mean over every token after the first up to the end of its
    response: for a chosen sequence, ORPOTrainer's NLL term over the prompt and response."""
    logits = model.logits(ids)[:, :-1]
    target = labels[:, 1:]
    mask = target != -100
    per_token = logits.log_softmax(-1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    sums = (per_token * mask).sum(-1)
    positions = torch.arange(target.shape[1])
    end = torch.where(mask, positions, -1).max(-1).values  # the last labelled position
    whole = positions <= end.unsqueeze(1)
    return sums, sums / mask.sum(-1), (per_token * whole).sum(-1) / whole.sum(-1)


def pair_losses(s, policy, ref):
    """Per pair: TRL's loss for setting s from (sums, means) of chosen [0::2] and rejected [1::2]."""
    (sums, means, whole_means), (ref_sums, ref_means, _) = policy, ref
    side = lambda t: (t[0::2], t[1::2])
    c_mean, r_mean = side(means)
    kind, beta = s["kind"], s["beta"]
    if kind == "dpo":
        ipo = s.get("loss") == "ipo"
        c, r = side(means - ref_means if ipo else sums - ref_sums)
        h = c - r
        if ipo:
            return (h - 1 / (2 * beta)) ** 2
        if s.get("loss") == "hinge":
            return torch.relu(1 - beta * h)
        return -F.logsigmoid(beta * h)
    if kind == "orpo":
        log_odds = (c_mean - r_mean) - (torch.log1p(-torch.exp(c_mean)) - torch.log1p(-torch.exp(r_mean)))
        return -whole_means[0::2] - beta * F.logsigmoid(log_odds)
    nll = -c_mean * s.get("alpha", 0)
    if kind == "simpo":
        return -F.logsigmoid(beta * (c_mean - r_mean) - s["gamma"]) + nll
    if kind == "cpo":
        if s.get("loss") == "ipo":
            return (c_mean - r_mean - 1 / (2 * beta)) ** 2 + nll
        c, r = side(sums)
        return -F.logsigmoid(beta * (c - r)) + nll
    raise ValueError(f"unknown objective {kind}")


def main(base_dir, adapter_dir, cases_path):
    config, weights = load_base(base_dir)
    modules, scaling = load_adapter(adapter_dir)
    model = Gpt2(config, weights, modules, scaling)
    cases = json.load(open(cases_path))
    pairs = torch.tensor(cases["ids"])
    labels = torch.tensor(cases["labels"])
    T = pairs.shape[1] // 2
    # Pair rows [chosen | rejected] as 2B sequences: chosen at 2b, rejected at 2b + 1.
    seq_ids, seq_labels = pairs.reshape(-1, T), labels.reshape(-1, T)
    model.adapters_on = False
    with torch.no_grad():
        ref = logps(model, seq_ids, seq_labels)
    model.adapters_on = True
    out = []
    for s in cases["settings"]:
        for m in modules.values():
            for t in m.values():
                t.grad = None
        loss = pair_losses(s, logps(model, seq_ids, seq_labels), ref).sum()
        loss.backward()
        grads = {
            path: {"a": m["A"].grad.flatten().tolist(), "b": m["B"].grad.flatten().tolist()}
            for path, m in modules.items()
        }
        out.append({"loss": loss.item(), "grads": grads})
    print(json.dumps({"cases": out}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
