#!/usr/bin/env python3
"""A tokenizer folder's ids and decodes by Hugging Face's own code: the Rust
`tokenizers` crate (its Python binding) for encode, transformers for decode
(clean_up_tokenization_spaces as the folder's config says) and for chat
templates (apply_chat_template, Python's jinja2). The reference for
tokenizer-rust.test.ts; needs the reference stack (scripts/reference-python.sh).

usage: tokenize_hf.py FOLDER INPUT_JSON
  INPUT_JSON: {"strings": [...], "conversations": [[{"role", "content"}, ...], ...]}
  prints {"versions", "ids": [encode(s, add_special_tokens=False)],
          "withSpecial": [encode(s) with the post-processor's BOS/EOS],
          "decoded": [decode(ids, skip_special_tokens=True)],
          "chat": [apply_chat_template(c, tokenize=False), and with add_generation_prompt]}
"""
import json
import logging
import sys
import warnings


def main(folder, input_path):
    import tokenizers
    import transformers
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.load(open(input_path))
    rust = Tokenizer.from_file(f"{folder}/tokenizer.json")
    hf = PreTrainedTokenizerFast.from_pretrained(folder)
    ids = [e.ids for e in rust.encode_batch(data["strings"], add_special_tokens=False)]
    with_special = [e.ids for e in rust.encode_batch(data["strings"], add_special_tokens=True)]
    decoded = [hf.decode(i, skip_special_tokens=True) for i in ids]
    chat = []
    if hf.chat_template:
        for conversation in data["conversations"]:
            rendered = [
                hf.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt)
                for prompt in (False, True)
            ]
            chat.append(rendered)
    versions = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__}
    print(json.dumps({"versions": versions, "ids": ids, "withSpecial": with_special, "decoded": decoded, "chat": chat}))


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    main(sys.argv[1], sys.argv[2])
