"""transformers' own learning-rate schedules for given cases: get_scheduler
(name, optimizer, num_warmup_steps, num_training_steps,
scheduler_specific_kwargs), stepped as Trainer steps it, printing the LR that
each optimizer step uses.

usage: lr_schedules.py '[{"name", "lr", "warmup", "total", "kwargs"}, ...]'
prints one JSON line: for each case, the LR of steps 0 .. total - 1.
"""
import json
import sys

import torch
from transformers import get_scheduler


def rates(case: dict) -> list:
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=case["lr"])
    scheduler = get_scheduler(
        case["name"],
        optimizer,
        num_warmup_steps=case["warmup"],
        num_training_steps=case["total"],
        scheduler_specific_kwargs=case["kwargs"],
    )
    out = []
    for _ in range(case["total"]):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def main() -> None:
    print(json.dumps([rates(case) for case in json.loads(sys.argv[1])]))


if __name__ == "__main__":
    main()
