"""TRL's SFTTrainer's own tokenized rows and labels for SFT data: its
_prepare_dataset (chat template, EOS, completion_mask, assistant_masks,
the labels column) run on the rows given, with completion_only_loss and
assistant_only_loss set, and truncated to max_length (none without it) from
the end that truncation_mode keeps.

usage: sft_labels.py '[{"tokenizer": DIR, "rows": [...], "completion_only_loss": B,
                        "assistant_only_loss": B, "max_length": N, "truncation_mode": M}, ...]'
prints one JSON line: for each case, for each row, {"input_ids": [...], "labels": [...]}.
"""
import json
import sys
from types import SimpleNamespace

from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer


def labelled(case: dict) -> list:
    tokenizer = AutoTokenizer.from_pretrained(case["tokenizer"])
    args = SFTConfig(
        output_dir="/tmp/sft-labels",
        max_length=case.get("max_length"),
        truncation_mode=case.get("truncation_mode", "keep_start"),
        assistant_only_loss=case["assistant_only_loss"],
        completion_only_loss=case["completion_only_loss"],
        dataset_num_proc=None,
        report_to=[],
        use_cpu=True,
        bf16=False,
    )
    # The trainer's own method on the state it reads: the tokenizer, the
    # resolved completion_only_loss, and no training template (TRL swaps one in
    # only for assistant_only_loss on a template without generation markers).
    trainer = SimpleNamespace(
        _tokenizer=tokenizer,
        completion_only_loss=case["completion_only_loss"],
        chat_template=None,
        _is_vision_dataset=False,
    )
    out = []
    for row in case["rows"]:
        prepared = SFTTrainer._prepare_dataset(
            trainer, Dataset.from_list([row]), tokenizer, args, False, None, "train"
        )
        example = prepared[0]
        out.append({"input_ids": example["input_ids"], "labels": example["labels"]})
    return out


def main() -> None:
    disable_progress_bar()
    print(json.dumps([labelled(case) for case in json.loads(sys.argv[1])]))


if __name__ == "__main__":
    main()
