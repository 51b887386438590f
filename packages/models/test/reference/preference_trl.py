#!/usr/bin/env python3
"""DPO's losses and LoRA gradients computed by TRL itself: trl.DPOTrainer's own
loss (`_compute_loss`, every loss_type the project has) on its own collated
batch (DataCollatorForPreference), with transformers' GPT2LMHeadModel (float64,
eager attention) given to the trainer with the adapter's LoraConfig, as TRL's
LoRA recipe does, and the project's adapter values loaded into the adapter it
makes; the reference is then TRL's for a new adapter: the adapter switched off. Needs
the reference stack (scripts/reference-python.sh: torch, transformers, peft,
trl at pinned versions); nothing is downloaded.

usage: preference_trl.py BASE_DIR ADAPTER_DIR CASES_JSON
  CASES_JSON: {"pairs": [{"prompt_ids", "chosen_ids", "rejected_ids"}],
               "settings": [{"loss", "beta", "label_smoothing"}]}
  prints {"versions": {...}, "cases": [{"loss": x, "grads": {module: {"a": [...], "b": [...]}},
                                        "logs": {"rewards/chosen": x, ... (LOGS)}}]}
  (loss: TRL's, the mean over pairs; module: PEFT's path without its
  "base_model.model." prefix)
"""
import json
import logging
import os
import sys
import tempfile
import warnings


LOGS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


def tokenizer():
    """A word-level tokenizer whose only use is to satisfy the trainer (pairs arrive as ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(8)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="t1", pad_token="t0")


def trainer_for(base_dir, adapter_dir, setting, out_dir):
    """TRL's usual LoRA set-up (the base model and a peft_config), then the adapter's values loaded."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=out_dir,
        beta=setting["beta"],
        loss_type=[setting["loss"]],
        label_smoothing=setting.get("label_smoothing", 0.0),
        report_to="none",
        use_cpu=True,
        bf16=False,
        fp16=False,
        max_length=None,
        gradient_checkpointing=False,  # TRL's default is on; no checkpointing keeps autograd plain
        dataset_num_proc=None,
    )
    dataset = Dataset.from_list([{"prompt": "t2", "chosen": " t3", "rejected": " t4"}])
    base = GPT2LMHeadModel.from_pretrained(base_dir, attn_implementation="eager", dtype=torch.float64)
    lora_config = LoraConfig.from_pretrained(adapter_dir)
    lora_config.inference_mode = False  # a saved adapter says True; a recipe's LoraConfig trains
    trainer = DPOTrainer(
        model=base,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer(),
        peft_config=lora_config,
    )
    state = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    result = set_peft_model_state_dict(trainer.model, {k: v.double() for k, v in state.items()})
    if result.unexpected_keys:
        raise ValueError(f"adapter keys peft does not know: {result.unexpected_keys}")
    return trainer


def main(base_dir, adapter_dir, cases_path):
    import peft
    import torch
    import transformers
    import trl
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    cases = json.load(open(cases_path))
    inputs = DataCollatorForPreference(pad_token_id=0)(cases["pairs"])
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in cases["settings"]:
            trainer = trainer_for(base_dir, adapter_dir, setting, tmp)
            trained = trainer.model
            trained.eval()  # no dropout; the loss is the training loss all the same
            trained.zero_grad(set_to_none=True)
            loss = trainer._compute_loss(trained, dict(inputs), return_outputs=False)
            loss.backward()
            grads = {}
            for name, p in trained.named_parameters():
                if p.grad is None or ".lora_" not in name:
                    continue
                path, which = name.removeprefix("base_model.model.").split(".lora_", 1)
                grads.setdefault(path, {})[which[0].lower()] = p.grad.flatten().tolist()
            # TRL's logs of this batch (the eval side: the model is in eval mode).
            logs = {name: values[-1] for name, values in trainer._metrics["eval"].items() if name in LOGS}
            out.append({"loss": float(loss), "grads": grads, "logs": logs})
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__}
    print(json.dumps({"versions": versions, "cases": out}))


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*sys.argv[1:4])
