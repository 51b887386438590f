#!/usr/bin/env python3
"""The preference losses and LoRA gradients computed by TRL itself: trl.DPOTrainer's
own loss (`_compute_loss`, every loss_type the project has) on its own collated
batch (DataCollatorForPreference), and trl.experimental's CPOTrainer (CPO,
SimPO, CPO-SimPO) and ORPOTrainer (`get_batch_loss_metrics` on their batch
layout), with transformers' GPT2LMHeadModel (float64,
eager attention) given to the trainer with the adapter's LoraConfig, as TRL's
LoRA recipe does, and the project's adapter values loaded into the adapter it
makes; the reference is then TRL's for a new adapter: the adapter switched off. Needs
the reference stack (scripts/reference-python.sh: torch, transformers, peft,
trl at pinned versions); nothing is downloaded.

usage: preference_trl.py BASE_DIR ADAPTER_DIR CASES_JSON
  CASES_JSON: {"pairs": [{"prompt_ids", "chosen_ids", "rejected_ids"}]
               or, for "trainer": "kto" (trl.KTOTrainer's `_compute_loss` on its
               DataCollatorForUnpairedPreference batch), "examples": [{"prompt_ids",
               "completion_ids", "KL_completion_ids", "label"}],
               "settings": [{"trainer": "dpo" | "cpo" | "orpo", "loss" (DPO: one or a list), "beta",
                             "label_smoothing", "alpha" (cpo_alpha), "gamma" (simpo_gamma),
                             "alphapo" (CPOConfig.alpha, AlphaPO's),
                             DPO_OPTIONAL's DPOConfig fields, "dtype": "float32" (else float64),
                             "start": an adapter folder DPO starts from (its reference)}]}
  prints {"versions": {...}, "cases": [{"loss": x, "grads": {module: {"a": [...], "b": [...]}},
                                        "logs": {"rewards/chosen": x, ... (LOGS; DPO_LOGS, KTO_LOGS for dpo, kto)}}]}
  (loss: TRL's, the mean over pairs; module: PEFT's path without its
  "base_model.model." prefix)
"""
import json
import logging
import os
import sys
import tempfile
import warnings


LOGS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "kl")
# DPOTrainer's and KTOTrainer's token metrics of the responses, beside LOGS
DPO_LOGS = LOGS + ("mean_token_accuracy", "entropy", "logits/chosen", "logits/rejected", "num_tokens")
KTO_LOGS = LOGS + ("entropy", "logits/chosen", "logits/rejected", "num_tokens")
# ORPOTrainer's NLL term and log odds; CPOTrainer's NLL term (its 0.0 with cpo_alpha 0 is no
# NLL term: not compared)
ORPO_LOGS = LOGS + ("nll_loss", "log_odds_ratio", "log_odds_chosen")
CPO_LOGS = LOGS + ("nll_loss",)


def tokenizer():
    """A word-level tokenizer whose only use is to satisfy the trainer (pairs arrive as ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(8)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="t1", pad_token="t0")


COMMON = dict(report_to="none", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False)


# DPOConfig's fields a case may set, by TRL's names.
DPO_OPTIONAL = (
    "loss_weights", "f_divergence_type", "f_alpha_divergence_coef", "discopop_tau", "ld_alpha", "use_weighting",
)


def dpo_trainer(setting, out_dir):
    from trl import DPOConfig, DPOTrainer

    loss = setting["loss"]
    optional = {key: setting[key] for key in DPO_OPTIONAL if key in setting}
    args = DPOConfig(
        output_dir=out_dir,
        beta=setting["beta"],
        loss_type=loss if isinstance(loss, list) else [loss],
        label_smoothing=setting.get("label_smoothing", 0.0),
        max_length=None,
        dataset_num_proc=None,
        **optional,
        **COMMON,
    )
    return DPOTrainer, args


def cpo_trainer(setting, out_dir):
    """trl.experimental's CPOTrainer: CPO's sigmoid, hinge or ipo, or SimPO (loss "simpo")."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    extra = {"simpo_gamma": setting["gamma"]} if setting["loss"] == "simpo" else {}
    args = CPOConfig(
        output_dir=out_dir,
        beta=setting["beta"],
        loss_type=setting["loss"],
        cpo_alpha=setting["alpha"],
        label_smoothing=setting.get("label_smoothing", 0.0),
        alpha=setting.get("alphapo", 0.0),
        **extra,
        **COMMON,
    )
    return CPOTrainer, args


def orpo_trainer(setting, out_dir):
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer, ORPOConfig(output_dir=out_dir, beta=setting["beta"], **COMMON)


def kto_trainer(setting, out_dir):
    """trl.KTOTrainer: loss_type kto or apo_zero_unpaired, desirable and undesirable weights."""
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(
        output_dir=out_dir,
        beta=setting["beta"],
        loss_type=setting["loss"],
        desirable_weight=setting.get("desirable_weight", 1.0),
        undesirable_weight=setting.get("undesirable_weight", 1.0),
        per_device_train_batch_size=2,
        max_length=None,
        dataset_num_proc=None,
        **COMMON,
    )
    return KTOTrainer, args


TRAINERS = {"dpo": dpo_trainer, "cpo": cpo_trainer, "orpo": orpo_trainer, "kto": kto_trainer}

# A dataset row of each trainer's format (the batches come from the cases, not from it).
DATASETS = {
    "kto": [{"prompt": "t2", "completion": " t3", "label": True}, {"prompt": "t2", "completion": " t4", "label": False}],
}


def trainer_for(base_dir, adapter_dir, setting, out_dir):
    """TRL's usual LoRA set-up (the base model and a peft_config), then the adapter's
    values loaded. With "start" (DPO): the model is PeftModel.from_pretrained(base,
    start, is_trainable=True), for which TRL keeps a frozen copy as its "ref"
    adapter, and the adapter's values are loaded over the trained one after that."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel

    trainer_class, args = TRAINERS[setting.get("trainer", "dpo")](setting, out_dir)
    rows = DATASETS.get(setting.get("trainer", "dpo"), [{"prompt": "t2", "chosen": " t3", "rejected": " t4"}])
    dataset = Dataset.from_list(rows)
    # float32 where TRL computes in no other dtype (alpha_divergence's clamp table lacks float64)
    dtype = torch.float32 if setting.get("dtype") == "float32" else torch.float64
    base = GPT2LMHeadModel.from_pretrained(base_dir, attn_implementation="eager", dtype=dtype)
    lora_config = LoraConfig.from_pretrained(adapter_dir)
    lora_config.inference_mode = False  # a saved adapter says True; a recipe's LoraConfig trains
    if "start" in setting:
        model = PeftModel.from_pretrained(base, setting["start"], is_trainable=True)
        setup = dict(model=model)
    else:
        setup = dict(model=base, peft_config=lora_config)
    trainer = trainer_class(args=args, train_dataset=dataset, processing_class=tokenizer(), **setup)
    if "start" in setting and "ref" not in trainer.model.peft_config:
        raise ValueError("TRL kept no 'ref' copy of the starting adapter")
    state = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    result = set_peft_model_state_dict(
        trainer.model, {k: v.to(dtype) for k, v in state.items()}, adapter_name="default"
    )
    if result.unexpected_keys:
        raise ValueError(f"adapter keys peft does not know: {result.unexpected_keys}")
    return trainer


def pair_batch(pairs):
    """The batch CPOTrainer and ORPOTrainer read: prompt + response ids, right-padded,
    labels -100 on the prompt and the padding (their collator's layout)."""
    import torch

    out = {}
    for side in ("chosen", "rejected"):
        rows = [p["prompt_ids"] + p[f"{side}_ids"] for p in pairs]
        width = max(len(r) for r in rows)
        pad = lambda r, value: r + [value] * (width - len(r))
        out[f"{side}_input_ids"] = torch.tensor([pad(r, 0) for r in rows])
        out[f"{side}_attention_mask"] = torch.tensor([pad([1] * len(r), 0) for r in rows])
        labels = [[-100] * len(p["prompt_ids"]) + p[f"{side}_ids"] for p in pairs]
        out[f"{side}_labels"] = torch.tensor([pad(r, -100) for r in labels])
    return out


def main(base_dir, adapter_dir, cases_path):
    import peft
    import torch
    import transformers
    import trl
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    cases = json.load(open(cases_path))
    if "examples" in cases:  # KTO: {"prompt_ids", "completion_ids", "KL_completion_ids", "label"}
        inputs = DataCollatorForUnpairedPreference(pad_token_id=0)(cases["examples"])
    else:
        inputs = DataCollatorForPreference(pad_token_id=0)(cases["pairs"])
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in cases["settings"]:
            trainer = trainer_for(base_dir, adapter_dir, setting, tmp)
            trained = trainer.model
            trained.eval()  # no dropout; the loss is the training loss all the same
            trained.zero_grad(set_to_none=True)
            if setting.get("trainer", "dpo") in ("dpo", "kto"):
                loss = trainer._compute_loss(trained, dict(inputs), return_outputs=False)
                metrics = {name: values[-1] for name, values in trainer._metrics["eval"].items()}
                # num_tokens counts in training only: the batch once more in train mode (the
                # trainer disabled dropout), for that log alone
                trained.train()
                with torch.no_grad():
                    trainer._compute_loss(trained, dict(inputs), return_outputs=False)
                trained.eval()
                metrics["num_tokens"] = trainer._metrics["train"]["num_tokens"][-1]
            else:
                loss, metrics = trainer.get_batch_loss_metrics(trained, pair_batch(cases["pairs"]))
            loss.backward()
            grads = {}
            for name, p in trained.named_parameters():
                if p.grad is None or ".lora_" not in name:
                    continue
                path, which = name.removeprefix("base_model.model.").split(".lora_", 1)
                grads.setdefault(path, {})[which[0].lower()] = p.grad.flatten().tolist()
            trainer_kind = setting.get("trainer", "dpo")
            cpo_logs = CPO_LOGS if trainer_kind == "cpo" and setting["alpha"] != 0 else LOGS
            kept = {"dpo": DPO_LOGS, "kto": KTO_LOGS, "orpo": ORPO_LOGS}.get(trainer_kind, cpo_logs)
            logs = {name: value for name, value in metrics.items() if name in kept}
            out.append({"loss": float(loss), "grads": grads, "logs": logs})
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__}
    print(json.dumps({"versions": versions, "cases": out}))


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*sys.argv[1:4])
