#!/usr/bin/env python3
"""torch's ReduceLROnPlateau as transformers' Trainer steps it (reduce_lr_on_plateau:
get_scheduler with the run's lr_scheduler_kwargs, stepped with the held-out metric after
each evaluation): the reference for core's plateau.ts (apps/coordinator/test/lr-schedules.test.ts).

usage: plateau.py CASES_JSON
  CASES_JSON: [{"lr", "kwargs" (lr_scheduler_kwargs), "metrics": [one per evaluation]}, ...]
  prints [[the LR after each evaluation], ...] and the versions, as one JSON line
"""
import json
import sys


def main(cases):
    import torch
    import transformers
    from transformers import get_scheduler

    out = []
    for case in cases:
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([param], lr=case["lr"])
        scheduler = get_scheduler(
            "reduce_lr_on_plateau", optimizer, scheduler_specific_kwargs=case["kwargs"]
        )
        lrs = []
        for metric in case["metrics"]:
            scheduler.step(metric)
            lrs.append(optimizer.param_groups[0]["lr"])
        out.append(lrs)
    print(json.dumps({"lrs": out, "torch": torch.__version__, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
