"""A generator's family and size (billions of parameters) read from its model name, for proposed configs.

The stability metric ranks siblings of one family by size, so a proposed crowd config needs both. They
are read only where the name states them: `Qwen2.5-72B-Instruct` -> (qwen2.5, 72), `gemma-2-27b-it` ->
(gemma-2, 27), `Meta-Llama-3.1-405B-Instruct` -> (llama-3.1, 405), `SmolLM2-135M-Instruct` -> (smollm2,
0.135); the Phi-3 names give no size (`Phi-3-mini-128k-instruct`: 128k is the context), so a small table of
published sizes fills those in. Anything else (`gpt-4o`, `Mixtral-8x7B`) is None: the caller asks the user,
it never guesses.
"""

from __future__ import annotations

import re

# sizes that the names do not state: (family, variant) -> billions of parameters (the model cards')
KNOWN_SIZES = {
    ("phi-3", "mini"): 3.8, ("phi-3", "small"): 7.0, ("phi-3", "medium"): 14.0,
    ("phi-3.5", "mini"): 3.8, ("phi-3.5", "moe"): 41.9,
}
ORG_PREFIXES = ("meta-",)  # "Meta-Llama-3-8B": the maker, not the family
SIZE = re.compile(r"(\d+(?:\.\d+)?)([bm])")


def family_and_size(name: str) -> tuple[str, float] | None:
    """(family, size_b) stated by a model name, or None when the name does not state both.

    >>> family_and_size("Qwen2.5-72B-Instruct"), family_and_size("gemma-2-27b-it")
    (('qwen2.5', 72.0), ('gemma-2', 27.0))
    >>> family_and_size("Meta-Llama-3.1-405B-Instruct"), family_and_size("Phi-3-small-128k-instruct")
    (('llama-3.1', 405.0), ('phi-3', 7.0))
    >>> family_and_size("Qwen/Qwen2-1.5B-Instruct"), family_and_size("SmolLM2-135M-Instruct")
    (('qwen2', 1.5), ('smollm2', 0.135))
    >>> family_and_size("gpt-4o") is None, family_and_size("Mixtral-8x7B-Instruct") is None
    (True, True)
    """
    base = name.rsplit("/", 1)[-1].lower()
    for prefix in ORG_PREFIXES:
        base = base.removeprefix(prefix)
    parts = re.split(r"[-_]", base)
    for i, part in enumerate(parts):
        m = SIZE.fullmatch(part)
        if m and i > 0:
            size = float(m.group(1)) / (1000 if m.group(2) == "m" else 1)
            return "-".join(parts[:i]), round(size, 6)
        family = "-".join(parts[:i])
        if i > 0 and (family, part) in KNOWN_SIZES:
            return family, KNOWN_SIZES[(family, part)]
    return None
