"""TRL's packing for SFT: pack_dataset (its "bfd", "bfd_split" or "wrapped"
strategy, through datasets' map as SFTTrainer calls it) on generated examples,
then each packed row through SFTTrainer's padding-free collator
(DataCollatorForLanguageModeling with padding_free=True), which gives the
position_ids the model reads and masks the label of every document's first
token.

Example i has lengths[i] tokens, ids i * 1000 + t, and its first masked[i]
labels -100.

usage: pack_dataset.py '[{"lengths": [...], "masked": [...], "seq_length": N, "strategy": S}, ...]'
prints one JSON line: for each case, its rows [{"input_ids", "labels", "position_ids"}, ...].
"""
import json
import sys

from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from trl import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


def packed(spec: dict) -> list:
    ids = [[i * 1000 + t for t in range(n)] for i, n in enumerate(spec["lengths"])]
    labels = [[-100 if t < m else x for t, x in enumerate(row)] for row, m in zip(ids, spec["masked"])]
    data = Dataset.from_dict({"input_ids": ids, "labels": labels})
    packed = pack_dataset(data, spec["seq_length"], spec["strategy"])
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=spec["strategy"] != "wrapped",
                                              return_position_ids=True)
    rows = []
    for example in packed:
        batch = collate([example])
        rows.append({k: batch[k][0].tolist() for k in ("input_ids", "labels", "position_ids")})
    return rows


if __name__ == "__main__":
    disable_progress_bar()
    print(json.dumps([packed(spec) for spec in json.loads(sys.argv[1])]))
