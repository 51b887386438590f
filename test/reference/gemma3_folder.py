"""Gemma 3's multimodal model as transformers reads and saves it.

usage: gemma3_folder.py '{"config": {...config.json...}, "save": DIR or null}'
prints one JSON line: {"text": the text model's config as Gemma3Config reads
it (the fields the project computes with), "tensors": {stored name: shape}
of Gemma3ForConditionalGeneration's save_pretrained in DIR (only with "save")}.
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from transformers import Gemma3Config, Gemma3ForConditionalGeneration


def main(request: dict) -> dict:
    fields = dict(request["config"])
    fields.pop("model_type", None)
    config = Gemma3Config(**fields)
    t = config.text_config
    text = {
        "vocab_size": t.vocab_size,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads,
        "head_dim": t.head_dim,
        "max_position_embeddings": t.max_position_embeddings,
        "rms_norm_eps": t.rms_norm_eps,
        "query_pre_attn_scalar": t.query_pre_attn_scalar,
        "sliding_window": t.sliding_window,
        "layer_types": t.layer_types,
        "rope_parameters": t.rope_parameters,
        "bos_token_id": t.bos_token_id,
        "eos_token_id": t.eos_token_id,
        # The multimodal model ties its head by the top-level field.
        "tie_word_embeddings": config.tie_word_embeddings,
    }
    out = {"text": text}
    if request.get("save"):
        torch.manual_seed(0)
        Gemma3ForConditionalGeneration(config).save_pretrained(request["save"])
        with safe_open(os.path.join(request["save"], "model.safetensors"), "pt") as f:
            out["tensors"] = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
