#!/usr/bin/env python3
"""The Python half of the GPU check (test/gpu/run.sh runs it; gpu.mjs is the
Node.js half). Needs torch, transformers, peft and numpy, as the GPU machine
has them; nothing is downloaded (local folders only).

  python3 test/gpu/reference.py make-tiny --dir DIR
      a tiny random GPT-2 saved by transformers (safetensors) + a byte
      tokenizer config the project reads + the token ids both sides use
  python3 test/gpu/reference.py check --work DIR
      transformers (float64, CPU) logits vs the project's (DIR/logits-*/),
      and the project's PEFT adapter (DIR/adapter/adapter.json) loaded with
      peft.PeftModel.from_pretrained vs the project's logits with it
  python3 test/gpu/reference.py make-families --dir DIR
      a tiny random model of each model_type in families.json (Llama,
      Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3, Granite, SmolLM3) made and saved by transformers, and the
      token ids (DIR/NAME/, DIR/ids.json)
  python3 test/gpu/reference.py check-families --dir DIR
      transformers (float64, CPU) logits of each vs the project's
      (DIR/NAME/logits-*/), and where gpu.mjs family-adapters made them,
      the project's adapter (DIR/adapted/NAME/run/adapter) in peft.PeftModel vs the
      project's logits with it, and the merged folder (DIR/adapted/NAME/merged) in
      transformers vs PEFT: DIR/families.json
  python3 test/gpu/reference.py throughput --out FILE [--steps N] [--warmup N]
      PyTorch + PEFT fp32 (TF32 off) on the GPU: GPT-2 small shape, LoRA r=8
      on c_attn, batch 8 x 512, AdamW; tokens/s and peak memory
"""
import argparse
import json
import os
import statistics
import sys
import time

# The tiny model: gpu.mjs's TINY has the same shape.
TINY = dict(
    vocab_size=257,
    n_positions=64,
    n_embd=64,
    n_layer=2,
    n_head=4,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    resid_pdrop=0.0,
    bos_token_id=256,
    eos_token_id=256,
)


def write_json(path, value):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def compare(got, ref):
    import numpy as np

    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shapes differ: {got.shape} vs {ref.shape}")
    diff = float(np.max(np.abs(got - ref)))
    scale = float(np.max(np.abs(ref)))
    return {"maxAbsDiff": diff, "maxAbsRef": scale, "relative": diff / scale if scale else diff}


def make_tiny(args):
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(**TINY, initializer_range=0.1)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        # Biases and LayerNorm parameters away from 0 and 1, so that mishandling them shows.
        for name, p in model.named_parameters():
            if name.endswith(".bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(args.dir)  # safetensors (transformers v5 dropped safe_serialization=)
    write_json(
        os.path.join(args.dir, "tokenizer_config.json"),
        {"tokenizer_class": "ByteTokenizer", "vocab_size": 257, "eos_token_id": 256, "model_max_length": 64},
    )
    ids = np.random.default_rng(12).integers(0, 256, size=(2, 24)).tolist()
    write_json(os.path.join(args.dir, "ids.json"), {"ids": ids})
    print(f"reference.py: tiny GPT-2 saved by transformers to {args.dir}: {sorted(os.listdir(args.dir))}")


def logits_of(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.double().numpy()


def read_f32(path, shape):
    import numpy as np

    return np.fromfile(path, dtype="<f4").reshape(shape)


def check(args):
    import peft
    import torch
    import transformers
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    work = args.work
    tiny = os.path.join(work, "tiny")
    ids = read_json(os.path.join(tiny, "ids.json"))["ids"]
    load = lambda: GPT2LMHeadModel.from_pretrained(tiny, attn_implementation="eager").double().eval()
    hf = logits_of(load(), ids)
    result = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "reference": "transformers GPT2LMHeadModel, float64, CPU",
        "logits": {},
        "peft": {},
    }
    adapter = read_json(os.path.join(work, "adapter", "adapter.json"))["adapterDir"]
    with_adapter = PeftModel.from_pretrained(load(), adapter).double().eval()
    hf_adapted = logits_of(with_adapter, ids)
    result["adapterEffect"] = compare(hf_adapted, hf)["maxAbsDiff"]
    # A DoRA adapter (use_dora) written by lorafleet train, when the run made one; peft
    # refusing its files is a finding to report, not a reason to lose the rest of the check.
    dora_json = os.path.join(work, "adapter-dora", "adapter.json")
    hf_dora = None
    if os.path.exists(dora_json):
        try:
            dora_dir = read_json(dora_json)["adapterDir"]
            hf_dora = logits_of(PeftModel.from_pretrained(load(), dora_dir).double().eval(), ids)
            result["doraEffect"] = compare(hf_dora, hf)["maxAbsDiff"]
            result["peftDora"] = {}
        except Exception as error:  # noqa: BLE001
            result["doraError"] = f"{type(error).__name__}: {error}"
    for backend in ("webgpu", "wasm", "cpu"):
        meta_path = os.path.join(work, f"logits-{backend}", "meta.json")
        if not os.path.exists(meta_path):
            continue
        meta = read_json(meta_path)
        shape = tuple(meta["shape"])
        result["logits"][backend] = compare(read_f32(os.path.join(work, f"logits-{backend}", "base.f32"), shape), hf)
        if "adapted.f32" in meta["files"]:
            got = read_f32(os.path.join(work, f"logits-{backend}", "adapted.f32"), shape)
            result["peft"][backend] = compare(got, hf_adapted)
        if hf_dora is not None and "adapted-dora.f32" in meta["files"]:
            got = read_f32(os.path.join(work, f"logits-{backend}", "adapted-dora.f32"), shape)
            result["peftDora"][backend] = compare(got, hf_dora)
    write_json(os.path.join(work, "parity.json"), result)
    print("reference.py: " + json.dumps(result))


FAMILIES_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "families.json")


def make_families(args):
    import numpy as np
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    for i, (name, fields) in enumerate(read_json(FAMILIES_JSON).items()):
        fields = dict(fields)
        model_type = fields.pop("model_type")
        config = AutoConfig.for_model(model_type, initializer_range=0.1, **fields)
        # Some types' default pad id (SmolLM3's 128004, Phi-3's 32000) lies past a tiny
        # vocabulary, where torch refuses the embedding's padding_idx.
        if isinstance(getattr(config, "pad_token_id", None), int) and config.pad_token_id >= config.vocab_size:
            config.pad_token_id = None
        torch.manual_seed(100 + i)
        model = AutoModelForCausalLM.from_config(config).float()
        with torch.no_grad():
            # Norm gains and biases away from their initial values, so that mishandling them shows.
            for pname, p in model.named_parameters():
                if pname.endswith("norm.weight") or pname.endswith(".bias"):
                    p.add_(0.3 * torch.randn_like(p))
        model.save_pretrained(os.path.join(args.dir, name))
    ids = np.random.default_rng(13).integers(0, 300, size=(2, 24)).tolist()
    write_json(os.path.join(args.dir, "ids.json"), {"ids": ids})
    print(f"reference.py: families saved by transformers {transformers.__version__} to {args.dir}")


def check_families(args):
    import peft
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = read_json(os.path.join(args.dir, "ids.json"))["ids"]
    result = {
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "reference": "AutoModelForCausalLM (and PeftModel), float64, CPU, eager",
    }
    for name in read_json(FAMILIES_JSON):
        folder = os.path.join(args.dir, name)
        load = lambda path: AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").double().eval()
        hf = logits_of(load(folder), ids)
        entry = result[name] = {"config": sorted(read_json(os.path.join(folder, "config.json")))}
        # The adapter from lorafleet train (families.mjs) in PEFT, and the folder lorafleet merge wrote.
        adapted = os.path.join(args.dir, "adapted", name)
        adapter = os.path.join(adapted, "run", "adapter")
        hf_adapted = None
        if os.path.exists(adapter):
            hf_adapted = logits_of(PeftModel.from_pretrained(load(folder), adapter).double().eval(), ids)
            entry["adapterEffect"] = compare(hf_adapted, hf)["maxAbsDiff"]
            entry["dora"] = bool(read_json(os.path.join(adapter, "adapter_config.json")).get("use_dora"))
            entry["mergedVsPeft"] = compare(logits_of(load(os.path.join(adapted, "merged")), ids), hf_adapted)
            extracted = os.path.join(adapted, "extracted")
            if os.path.exists(extracted):  # lorafleet extract's adapter of the merged folder, in PEFT
                hf_extracted = logits_of(PeftModel.from_pretrained(load(folder), extracted).double().eval(), ids)
                entry["extractedVsPeft"] = compare(hf_extracted, hf_adapted)
        for backend in ("webgpu", "wasm", "cpu"):
            meta_path = os.path.join(folder, f"logits-{backend}", "meta.json")
            if not os.path.exists(meta_path):
                continue
            meta = read_json(meta_path)
            read = lambda file: read_f32(os.path.join(folder, f"logits-{backend}", file), tuple(meta["shape"]))
            entry[backend] = compare(read("base.f32"), hf)
            if hf_adapted is not None and "adapted.f32" in meta["files"]:
                entry[f"{backend}Peft"] = compare(read("adapted.f32"), hf_adapted)
    write_json(os.path.join(args.dir, "families.json"), result)
    print("reference.py: " + json.dumps(result))


def fp32_matmul_tflops(torch, n, repeats=10):
    """cuBLAS fp32 (no TF32) on [n, n] x [n, n]: the peer for the project's square matmul."""
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / repeats
    print(f"reference.py: torch fp32 matmul {n}^3: {2 * n**3 / seconds / 1e12:.1f} TFLOP/s")
    return 2 * n**3 / seconds / 1e12


def throughput(args):
    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_float32_matmul_precision("highest")  # fp32 matmuls, no TF32, as WebGPU runs them
    torch.manual_seed(0)
    B, T = 8, 512
    config = GPT2Config(n_positions=1024, n_embd=768, n_layer=12, n_head=12, vocab_size=50257,
                        embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    started = time.perf_counter()
    model = GPT2LMHeadModel(config).cuda()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], lora_dropout=0.0,
                      fan_in_fan_out=True, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
    x = torch.randint(0, config.vocab_size, (B, T), device="cuda", generator=None)
    torch.cuda.synchronize()
    load_seconds = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        losses.append(float(loss))
        if step >= args.warmup:
            times.append(seconds)
        print(f"reference.py: torch step {step + 1}/{args.warmup + args.steps}: {seconds:.4f} s, loss {losses[-1]:.4f}")
    median = statistics.median(times)
    matmul_tflops = fp32_matmul_tflops(torch, 4096)
    result = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": torch.cuda.get_device_name(0),
        "dtype": "float32 (matmul precision highest: no TF32)",
        "attention": getattr(model.config, "_attn_implementation", "unknown"),
        "batch": B,
        "seqLen": T,
        "trainable": sum(p.numel() for p in trainable),
        "warmup": args.warmup,
        "steps": args.steps,
        "loadSeconds": load_seconds,
        "stepSeconds": times,
        "medianStepSeconds": median,
        "tokensPerSecond": B * T / median,
        "losses": losses,
        "maxMemoryAllocated": torch.cuda.max_memory_allocated(),
        "maxMemoryReserved": torch.cuda.max_memory_reserved(),
        "matmul4096Tflops": matmul_tflops,
    }
    write_json(args.out, result)
    print(f"reference.py: torch+peft {result['tokensPerSecond']:.0f} tokens/s, "
          f"max_memory_allocated {result['maxMemoryAllocated'] / 2**30:.2f} GiB")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-tiny")
    p.add_argument("--dir", required=True)
    p = sub.add_parser("check")
    p.add_argument("--work", required=True)
    p = sub.add_parser("make-families")
    p.add_argument("--dir", required=True)
    p = sub.add_parser("check-families")
    p.add_argument("--dir", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    commands = {
        "make-tiny": make_tiny,
        "check": check,
        "make-families": make_families,
        "check-families": check_families,
        "throughput": throughput,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
