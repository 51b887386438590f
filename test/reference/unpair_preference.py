"""TRL's KTOTrainer on a file of preference pairs: the first two steps of its
_prepare_dataset, with its own functions and datasets' map as it calls them
(extract_prompt where the first example has no "prompt", then
unpair_preference_dataset where it has "chosen" and "rejected"). The rest of
_prepare_dataset (EOS, tokenization) is what a file of unpaired feedback
goes through too.

usage: unpair_preference.py '{"path": "pairs.jsonl"}'
prints one JSON line: the unpaired records [{"prompt", "completion", "label"}, ...] in order.
"""
import json
import sys

from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from trl.data_utils import extract_prompt, unpair_preference_dataset


def unpaired(path: str) -> list:
    with open(path) as f:
        dataset = Dataset.from_list([json.loads(line) for line in f if line.strip()])
    if "prompt" not in dataset[0]:
        dataset = dataset.map(extract_prompt)
    if "chosen" in dataset[0] and "rejected" in dataset[0]:
        dataset = unpair_preference_dataset(dataset)
    return [{k: row[k] for k in ("prompt", "completion", "label")} for row in dataset]


if __name__ == "__main__":
    disable_progress_bar()
    print(json.dumps(unpaired(json.loads(sys.argv[1])["path"])))
