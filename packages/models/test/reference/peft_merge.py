#!/usr/bin/env python3
"""PEFT's LoRA math, written from PEFT's documentation and source
(peft/tuners/lora/layer.py, peft/utils/save_and_load.py), independent of the
TypeScript code: reads a base model folder's model.safetensors and a PEFT
adapter folder (adapter_config.json + adapter_model.safetensors), merges the
adapter in float64 and writes the merged model.safetensors (F32) plus the
base's config.json to OUT. Only numpy; no torch, no peft.

  nn.Linear:     W[out, in] += scaling * B @ A        (W^T when fan_in_fan_out)
  nn.Embedding:  W[V, C]    += scaling * (B @ A)^T    (lora_embedding_A [r, V], B [C, r])
  DoRA (use_dora): W[out, in] = m / ||W + scaling * B @ A||_row * (W + scaling * B @ A),
                 m = "<m>.lora_magnitude_vector" [out] (peft/tuners/lora/dora.py)
  scaling = alpha / r  (alpha / sqrt(r) with use_rslora), r and alpha per module
  from rank_pattern / alpha_pattern (get_pattern_key: re.match(rf"(.*\\.)?({key})$")).
  Any other tensor (a trained bias, a modules_to_save weight) replaces the base's,
  "<m>.base_layer.<p>" naming the base module's "<m>.<p>".

usage: peft_merge.py BASE_DIR ADAPTER_DIR OUT_DIR
"""
import json
import math
import os
import re
import shutil
import struct
import sys

import numpy as np

PREFIX = "base_model.model."


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = body[start:end]
        dtype = info["dtype"]
        if dtype == "F32":
            values = np.frombuffer(chunk, dtype="<f4").astype(np.float64)
        elif dtype == "F16":
            values = np.frombuffer(chunk, dtype="<f2").astype(np.float64)
        elif dtype == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32).astype(np.float64)
        else:
            raise SystemExit(f"{path}: {name} has dtype {dtype}, not F32/F16/BF16")
        out[name] = values.reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def pattern_value(pattern, path, default):
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def main(base_dir, adapter_dir, out_dir):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    assert cfg["peft_type"] == "LORA", cfg["peft_type"]
    weights = read_safetensors(os.path.join(base_dir, "model.safetensors"))
    adapter = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))

    def scaling(path, r):
        expected_r = pattern_value(cfg.get("rank_pattern"), path, cfg["r"])
        assert r == expected_r, f"{path}: rank {r}, config gives {expected_r}"
        alpha = pattern_value(cfg.get("alpha_pattern"), path, cfg["lora_alpha"])
        return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r

    for key, value in adapter.items():
        assert key.startswith(PREFIX), key
        linear = re.fullmatch(r"base_model\.model\.(.+)\.lora_A\.weight", key)
        embedding = re.fullmatch(r"base_model\.model\.(.+)\.lora_embedding_A", key)
        if linear:
            path = linear.group(1)
            a, b = value, adapter[f"{PREFIX}{path}.lora_B.weight"]
            flip = cfg.get("fan_in_fan_out")
            w = weights[f"{path}.weight"].T if flip else weights[f"{path}.weight"]  # [out, in]
            merged = w + scaling(path, a.shape[0]) * (b @ a)
            if cfg.get("use_dora"):
                m = adapter[f"{PREFIX}{path}.lora_magnitude_vector"]
                merged = (m / np.linalg.norm(merged, axis=1))[:, None] * merged
            weights[f"{path}.weight"] = merged.T if flip else merged
        elif embedding:
            path = embedding.group(1)
            a, b = value, adapter[f"{PREFIX}{path}.lora_embedding_B"]
            delta = scaling(path, a.shape[0]) * (b @ a).T
            weights[f"{path}.weight"] = weights[f"{path}.weight"] + delta
        elif re.search(r"\.lora_(B|embedding_B)(\.weight)?$", key):
            continue  # the other half of a pair above
        elif key.endswith(".lora_magnitude_vector"):
            assert cfg.get("use_dora"), f"{key} in an adapter without use_dora"
            continue  # DoRA's magnitude, read with its pair above
        else:
            name = key[len(PREFIX) :].replace(".base_layer.", ".")
            assert name in weights, f"{key}: the base model has no {name}"
            assert weights[name].shape == value.shape, key
            weights[name] = value

    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), weights)
    shutil.copy(os.path.join(base_dir, "config.json"), os.path.join(out_dir, "config.json"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
