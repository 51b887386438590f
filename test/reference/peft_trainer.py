#!/usr/bin/env python3
"""transformers' Trainer (or TRL's SFTTrainer) with PEFT training a LoRA adapter
further: the reference run for `lorafleet train --init-adapter`
(test/trainer-parity.test.ts). The base model (float64, eager attention) gets
the adapter with PeftModel.from_pretrained(..., is_trainable=True); the trainer
runs AdamW (adamw_torch) or the spec's optim and optim_args, the linear schedule with warmup, global-norm clipping
and weight decay on every line of the data each step (one batch per step, so
the order of lines does not matter): {"input_ids"} lines with Trainer (labels =
ids), or {"prompt", "completion"} lines with TRL's SFTTrainer ("trainer":
"sft"; the loss on the completion and its EOS). Needs the reference stack
(scripts/reference-python.sh); nothing is downloaded.

usage: peft_trainer.py SPEC_JSON
  SPEC_JSON: {"model", "adapter", "data", "steps", "lr", "warmup" (steps, or a share
              of them below 1), "weightDecay", "maxGradNorm", "adam": {"beta1", "beta2",
              "eps"} (default torch's), "optim", "optimArgs" (transformers' optim and
              optim_args; default adamw_torch), "compare": [adapter folders written by
              lorafleet train], "trainer": "lm" (default) or "sft", with "sft" optionally
              "packing" (SFTConfig's packing_strategy: "bfd", "bfd_split" or "wrapped") and
              "maxLength" (its max_length, the packed rows' length)}
usage: peft_trainer.py byte-tokenizer MODEL_DIR
  writes a byte-level BPE tokenizer.json (no merges: a token per byte,
  <|endoftext|> 256) and tokenizer_config.json into MODEL_DIR
  prints {"versions", "losses": [Trainer's loss per step],
          with "trainer": "sft" also "accuracies", "entropies", "numTokens" (SFTTrainer's
          mean_token_accuracy, entropy and num_tokens per step) and "eval" ({"loss", "mean_token_accuracy", "entropy"} of
          trainer.evaluate() on the data, in one batch, after training),
          "moved": max |final - initial| of the adapter's values,
          "compare": {folder: {"maxAbsDiff", "elements", "over1PercentOfMoved"}}}
"""
import json
import logging
import os
import sys
import tempfile
import warnings


def adapter_values(model):
    """The trainable LoRA tensors by PEFT's saved key (adapter name dropped)."""
    return {
        name.replace(".default", ""): p.detach().to("cpu").double().numpy().copy()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def compare(folder, reference, moved):
    """The saved adapter vs the reference's: the largest difference, and how many
    elements differ by more than 1% of the largest movement (AdamW's normalised
    step turns float32 rounding in an element whose gradient is near zero into a
    difference of up to a step there)."""
    import numpy as np
    from safetensors.numpy import load_file

    saved = load_file(os.path.join(folder, "adapter_model.safetensors"))
    if sorted(saved) != sorted(reference):
        raise ValueError(f"{folder}: keys differ: {sorted(saved)[:4]} vs {sorted(reference)[:4]}")
    diffs = np.concatenate([np.abs(saved[k].astype(np.float64) - reference[k]).ravel() for k in saved])
    return {
        "maxAbsDiff": float(diffs.max()),
        "elements": int(diffs.size),
        "over1PercentOfMoved": int((diffs > 0.01 * moved).sum()),
    }


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    return dict(zip(bs, map(chr, cs)))


def byte_tokenizer(model_dir):
    """A byte-level BPE tokenizer.json with no merges (token = byte, <|endoftext|> = 256),
    made by the tokenizers library, and its tokenizer_config.json, into the model folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    table = bytes_to_unicode()
    tokenizer = Tokenizer(models.BPE(vocab={table[b]: b for b in range(256)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>"])
    tokenizer.save(os.path.join(model_dir, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)


def sft_trainer(spec, model, args_common):
    """TRL's SFTTrainer on {"prompt", "completion"} lines: the loss on the completion and its EOS."""
    import datasets
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    lines = [json.loads(line) for line in open(spec["data"]) if line.strip()]
    data = datasets.Dataset.from_list([{"prompt": l["prompt"], "completion": l["completion"]} for l in lines])
    # "packing": "bfd" packs by best fit into rows of "maxLength", each document apart
    # (padding-free: position_ids restart at each, and the attention mask follows them).
    packing = spec.get("packing")
    args = SFTConfig(
        **args_common,
        per_device_train_batch_size=len(lines),
        per_device_eval_batch_size=len(lines),
        gradient_checkpointing=False,
        max_length=spec["maxLength"] if packing else None,
        packing=packing is not None,
        packing_strategy=packing or "bfd",
        # "paddingFree": each batch's examples end to end in one row, without packing
        padding_free=spec.get("paddingFree", False),
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    tokenizer = PreTrainedTokenizerFast.from_pretrained(spec["model"])
    return SFTTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer)


def lm_trainer(spec, model, args_common):
    """transformers' Trainer on {"input_ids"} lines, labels = ids."""
    import datasets
    from transformers import Trainer, TrainingArguments

    rows = [json.loads(line)["input_ids"] for line in open(spec["data"]) if line.strip()]
    args = TrainingArguments(**args_common, per_device_train_batch_size=len(rows))
    # Labels are the ids with the first, which nothing predicts, set to -100: Trainer
    # divides the summed loss by the labels it counts before the shift (num_items_in_batch),
    # so a first label left in counts one token per row more than the loss has.
    labels = [[-100] + row[1:] for row in rows]
    data = datasets.Dataset.from_dict({"input_ids": rows, "labels": labels})
    return Trainer(model=model, args=args, train_dataset=data)


def main(spec_path):
    import numpy as np
    import peft
    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = json.load(open(spec_path))
    base = AutoModelForCausalLM.from_pretrained(spec["model"], attn_implementation="eager", dtype=torch.float64)
    model = PeftModel.from_pretrained(base, spec["adapter"], is_trainable=True)
    initial = adapter_values(model)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(
            output_dir=tmp,
            max_steps=spec["steps"],
            learning_rate=spec["lr"],
            warmup_steps=spec["warmup"],
            lr_scheduler_type="linear",
            weight_decay=spec["weightDecay"],
            max_grad_norm=spec["maxGradNorm"],
            adam_beta1=spec.get("adam", {}).get("beta1", 0.9),
            adam_beta2=spec.get("adam", {}).get("beta2", 0.999),
            adam_epsilon=spec.get("adam", {}).get("eps", 1e-8),
            optim=spec.get("optim", "adamw_torch"),
            optim_args=spec.get("optimArgs"),
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = (sft_trainer if spec.get("trainer") == "sft" else lm_trainer)(spec, model, common)
        trainer.train()
        history = trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        # SFTTrainer's token metrics per step, and its evaluation of the trained adapter on the data.
        sft = {"accuracies": [h["mean_token_accuracy"] for h in history if "mean_token_accuracy" in h],
               "entropies": [h["entropy"] for h in history if "entropy" in h],
               "numTokens": [h["num_tokens"] for h in history if "num_tokens" in h and "loss" in h]}
        if spec.get("trainer") == "sft":
            evaluated = trainer.evaluate()
            sft["eval"] = {k: evaluated[f"eval_{k}"] for k in ("loss", "mean_token_accuracy", "entropy")}
    final = adapter_values(model)
    moved = max(float(np.max(np.abs(final[k] - initial[k]))) for k in final)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    result = {"versions": versions, "losses": losses, "moved": moved, **(sft if spec.get("trainer") == "sft" else {})}
    result["compare"] = {folder: compare(folder, final, moved) for folder in spec["compare"]}
    print(json.dumps(result))


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    if sys.argv[1] == "byte-tokenizer":
        byte_tokenizer(sys.argv[2])
    else:
        main(sys.argv[1])
