#!/usr/bin/env python3
"""transformers' Trainer with PEFT training a LoRA adapter further: the
reference run for `lorafleet train --init-adapter` (test/trainer-parity.test.ts).
The base model (float64, eager attention) gets the adapter with
PeftModel.from_pretrained(..., is_trainable=True); Trainer runs AdamW
(adamw_torch), the linear schedule with warmup, global-norm clipping and
weight decay on every {"input_ids"} row of the data each step (labels = ids,
one batch per step, so the order of rows does not matter). Needs the reference
stack (scripts/reference-python.sh); nothing is downloaded.

usage: peft_trainer.py SPEC_JSON
  SPEC_JSON: {"model", "adapter", "data", "steps", "lr", "warmup", "weightDecay",
              "maxGradNorm", "compare": [adapter folders written by lorafleet train]}
  prints {"versions", "losses": [Trainer's loss per step],
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


def main(spec_path):
    import datasets
    import numpy as np
    import peft
    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    spec = json.load(open(spec_path))
    rows = [json.loads(line)["input_ids"] for line in open(spec["data"]) if line.strip()]
    base = AutoModelForCausalLM.from_pretrained(spec["model"], attn_implementation="eager", dtype=torch.float64)
    model = PeftModel.from_pretrained(base, spec["adapter"], is_trainable=True)
    initial = adapter_values(model)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=len(rows),
            max_steps=spec["steps"],
            learning_rate=spec["lr"],
            warmup_steps=spec["warmup"],
            lr_scheduler_type="linear",
            weight_decay=spec["weightDecay"],
            max_grad_norm=spec["maxGradNorm"],
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            optim="adamw_torch",
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            remove_unused_columns=False,
        )
        # Labels are the ids with the first, which nothing predicts, set to -100: Trainer
        # divides the summed loss by the labels it counts before the shift (num_items_in_batch),
        # so a first label left in counts one token per row more than the loss has.
        labels = [[-100] + row[1:] for row in rows]
        data = datasets.Dataset.from_dict({"input_ids": rows, "labels": labels})
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    final = adapter_values(model)
    moved = max(float(np.max(np.abs(final[k] - initial[k]))) for k in final)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    result = {"versions": versions, "losses": losses, "moved": moved}
    result["compare"] = {folder: compare(folder, final, moved) for folder in spec["compare"]}
    print(json.dumps(result))


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    main(sys.argv[1])
