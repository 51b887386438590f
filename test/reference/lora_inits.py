#!/usr/bin/env python3
"""PEFT's OLoRA, orthogonal and PiSSA initialisations (init_lora_weights="olora",
"orthogonal", "pissa", "pissa_niter_N") and torch.linalg.qr: the reference for core's
oloraInit, orthogonalFactors, pissaInit and qr (packages/core/test/lora-inits.test.ts).

usage: lora_inits.py INPUT_JSON
  INPUT_JSON: {"qr": [{"rows", "cols", "values" (row-major)}],
               "olora": [{"out", "in", "r", "alpha", "rslora", "weight" (row-major [out, in])}],
               "orthogonal": [{"out", "in", "r", "seed"}],
               "pissa": [{"out", "in", "r", "alpha", "init", "weight" (row-major [out, in])}]}
  prints {"qr": [{"q", "r"} row-major, float64], "olora": [{"a" [r, in], "b" [out, r],
          "residual" [out, in]}], "orthogonal": [{"a", "b", "x" [r, r], "ra" [in, r/2],
          "rb" [r/2, out]}] (the random draws PEFT's orthogonal_init made), "pissa": [{"update"
          (scaling B A, [out, in]: the factors' signs are LAPACK's), "residual"}], "versions"}
  as one JSON line
"""
import json
import sys


def main(spec):
    import peft
    import torch

    qrs = []
    for m in spec["qr"]:
        x = torch.tensor(m["values"], dtype=torch.float64).reshape(m["rows"], m["cols"])
        q, r = torch.linalg.qr(x)  # reduced, LAPACK's geqrf + orgqr
        qrs.append({"q": q.flatten().tolist(), "r": r.flatten().tolist()})

    oloras = []
    for c in spec["olora"]:
        module = torch.nn.Sequential()
        module.add_module("lin", torch.nn.Linear(c["in"], c["out"], bias=False))
        with torch.no_grad():
            module.lin.weight.copy_(torch.tensor(c["weight"]).reshape(c["out"], c["in"]))
        config = peft.LoraConfig(
            r=c["r"],
            lora_alpha=c["alpha"],
            use_rslora=c["rslora"],
            target_modules=["lin"],
            init_lora_weights="olora",
        )
        model = peft.get_peft_model(module, config)
        layer = model.base_model.model.lin
        oloras.append(
            {
                "a": layer.lora_A["default"].weight.detach().flatten().tolist(),
                "b": layer.lora_B["default"].weight.detach().flatten().tolist(),
                "residual": layer.base_layer.weight.detach().flatten().tolist(),
            }
        )
    orthogonals = []
    for c in spec["orthogonal"]:
        module = torch.nn.Sequential()
        module.add_module("lin", torch.nn.Linear(c["in"], c["out"], bias=False))
        config = peft.LoraConfig(r=c["r"], lora_alpha=c["r"], target_modules=["lin"])
        layer = peft.get_peft_model(module, config).base_model.model.lin
        torch.manual_seed(c["seed"])
        layer.orthogonal_init("default")  # what init_lora_weights="orthogonal" calls
        torch.manual_seed(c["seed"])  # its draws again, in its order
        x = torch.randn(c["r"], c["r"])
        ra = torch.randn(c["in"], c["r"] // 2)
        rb = torch.randn(c["r"] // 2, c["out"])
        orthogonals.append(
            {
                "a": layer.lora_A["default"].weight.detach().flatten().tolist(),
                "b": layer.lora_B["default"].weight.detach().flatten().tolist(),
                "x": x.flatten().tolist(),
                "ra": ra.flatten().tolist(),
                "rb": rb.flatten().tolist(),
            }
        )
    pissas = []
    for c in spec.get("pissa", []):
        module = torch.nn.Sequential()
        module.add_module("lin", torch.nn.Linear(c["in"], c["out"], bias=False))
        with torch.no_grad():
            module.lin.weight.copy_(torch.tensor(c["weight"]).reshape(c["out"], c["in"]))
        config = peft.LoraConfig(
            r=c["r"], lora_alpha=c["alpha"], target_modules=["lin"], init_lora_weights=c["init"]
        )
        torch.manual_seed(0)  # svd_lowrank's Gaussian draws
        layer = peft.get_peft_model(module, config).base_model.model.lin
        a = layer.lora_A["default"].weight.detach()
        b = layer.lora_B["default"].weight.detach()
        pissas.append(
            {
                "update": (layer.scaling["default"] * b @ a).flatten().tolist(),
                "residual": layer.base_layer.weight.detach().flatten().tolist(),
            }
        )
    versions = {"torch": torch.__version__, "peft": peft.__version__}
    out = {"qr": qrs, "olora": oloras, "orthogonal": orthogonals, "pissa": pissas, "versions": versions}
    print(json.dumps(out))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
