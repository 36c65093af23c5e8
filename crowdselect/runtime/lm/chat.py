"""Chat encoding: messages rendered with the tokenizer's chat template into token ids.

Every prompt a model sees goes through `encode_chat` (the generators, the judge and classifier rewards, the
baselines, the eval). Knows nothing of models, Ray or rows.
"""

from __future__ import annotations

from typing import Any


def encode_chat(tok: Any, messages: list[dict[str, str]], add_generation_prompt: bool, suffix: str = "") -> list[int]:
    """Token ids of a chat rendered with the tokenizer's template, plus `suffix` (a forced answer start).

    A tokenizer without a chat template (base models such as Gemma 3 270M) gets a plain
    "### User: ... ### Assistant:" layout, with the tokenizer's own special tokens (BOS).
    """
    if tok.chat_template:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return tok.encode(text + suffix, add_special_tokens=False)
    text = "".join(f"### {m['role'].title()}:\n{m['content']}\n\n" for m in messages)
    if add_generation_prompt:
        text += "### Assistant:\n"
    return tok.encode(text + suffix, add_special_tokens=True)
