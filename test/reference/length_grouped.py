"""transformers' own LengthGroupedSampler order (train_sampling_strategy=
"group_by_length") for given shuffled orders: get_length_grouped_indices
with torch.randperm returning the order given, so the grouping, the
megabatch size and the longest-first swap are transformers' and only the
random permutation is the caller's.

usage: length_grouped.py '[{"shuffled": [...], "lengths": [...], "batch": B}, ...]'
prints one JSON line: for each case, the order transformers yields.
"""
import json
import sys

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


def order(case: dict) -> list:
    shuffled = torch.tensor(case["shuffled"], dtype=torch.int64)
    real = torch.randperm
    torch.randperm = lambda n, generator=None: shuffled  # noqa: E731
    try:
        sampler = LengthGroupedSampler(case["batch"], lengths=case["lengths"])
        return list(iter(sampler))
    finally:
        torch.randperm = real


def main() -> None:
    print(json.dumps([order(case) for case in json.loads(sys.argv[1])]))


if __name__ == "__main__":
    main()
