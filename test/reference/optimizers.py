#!/usr/bin/env python3
"""The optimizers of transformers' `optim` as its Trainer builds them, stepped on given
gradients: the reference for core's optim/ (packages/core/test/optimizers.test.ts).
torch.optim.SGD, Adagrad and RMSprop; transformers' Adafactor (scale_parameter and
relative_step off, as Trainer's `adafactor`); Lion as Algorithm 1 of Chen et al. 2023
(bitsandbytes' 32-bit Lion, `lion_32bit`, computes it; bitsandbytes is not in the stack).

usage: optimizers.py CASES_JSON
  CASES_JSON: [{"kind", "kwargs" (the optimizer's, lr aside), "params": [{"shape", "values"}],
                "groups": [{"params": [indices], "lrScale", "weight_decay"}],
                "lrs": [the schedule's lr per step], "grads": [[flat gradient per param] per step]}]
  prints {"cases": [{"params": [[flat float32 params after each step]],
                     "state": [{name: [flat values]} per param]}], versions} as one JSON line
"""
import json
import sys


class Lion:
    """Chen et al. 2023, Algorithm 1 with decoupled weight decay."""

    def __init__(self, groups, betas):
        self.param_groups, self.betas, self.state = groups, betas, {}

    def step(self):
        import torch

        b1, b2 = self.betas
        for group in self.param_groups:
            for p in group["params"]:
                m = self.state.setdefault(p, {"exp_avg": torch.zeros_like(p)})["exp_avg"]
                with torch.no_grad():
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-group["lr"])
                    m.mul_(b2).add_(p.grad, alpha=1 - b2)


def make(kind, groups, kwargs):
    import torch
    from transformers.optimization import Adafactor

    if kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], **kwargs)
    if kind == "adagrad":
        return torch.optim.Adagrad(groups, lr=groups[0]["lr"], **kwargs)
    if kind == "rmsprop":
        return torch.optim.RMSprop(groups, lr=groups[0]["lr"], **kwargs)
    if kind == "adafactor":
        return Adafactor(groups, lr=groups[0]["lr"], scale_parameter=False, relative_step=False, **kwargs)
    if kind == "lion":
        return Lion(groups, tuple(kwargs["betas"]))
    raise ValueError(kind)


def run(case):
    import torch

    params = [torch.nn.Parameter(torch.tensor(p["values"], dtype=torch.float32).reshape(p["shape"]))
              for p in case["params"]]
    groups = [{"params": [params[i] for i in g["params"]], "lr": case["lrs"][0] * g["lrScale"],
               "weight_decay": g["weight_decay"], "scale": g["lrScale"]} for g in case["groups"]]
    optimizer = make(case["kind"], groups, case["kwargs"])
    trajectory = []
    for lr, grads in zip(case["lrs"], case["grads"]):
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]  # the schedule, as LambdaLR sets it per group
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float32).reshape(p.shape)
        optimizer.step()
        trajectory.append([v for p in params for v in p.detach().reshape(-1).tolist()])
    state = [{name: {"shape": list(t.shape), "values": t.reshape(-1).tolist()}
              for name, t in optimizer.state[p].items()
              if torch.is_tensor(t) and t.dim() > 0}
             for p in params]
    return {"params": trajectory, "state": state}


def main(cases):
    import torch
    import transformers

    out = [run(case) for case in cases]
    print(json.dumps({"cases": out, "torch": torch.__version__, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
