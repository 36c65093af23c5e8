"""Pure token budgets: how much of an (instruction, response) pair fits a model's length limit.

No tokenizer or torch here: callers pass token counts and get counts or token lists back.
"""

from __future__ import annotations


def split_budget(n_instruction: int, n_response: int, budget: int, prompt_share: float) -> tuple[int, int]:
    """Tokens to keep of (instruction, response) so that the sum fits `budget`.

    The instruction may keep at most `floor(budget * prompt_share)` tokens unless the response leaves room;
    the response gets what the instruction leaves. Both are kept whole when they fit.

    >>> split_budget(10, 10, 100, 0.5)
    (10, 10)
    >>> split_budget(80, 80, 100, 0.5)
    (50, 50)
    >>> split_budget(80, 10, 100, 0.5)     # a short response leaves its room to the instruction
    (80, 10)
    >>> split_budget(10, 300, 100, 0.5)    # a short instruction leaves its room to the response
    (10, 90)
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if n_instruction + n_response <= budget:
        return n_instruction, n_response
    cap = int(budget * prompt_share)
    keep_instruction = min(n_instruction, max(cap, budget - n_response))
    return keep_instruction, min(n_response, budget - keep_instruction)


def head(ids: list[int], n: int) -> list[int]:
    """The first n tokens."""
    return list(ids[:n])


def tail(ids: list[int], n: int) -> list[int]:
    """The last n tokens (none for n <= 0)."""
    return list(ids[len(ids) - n:]) if n > 0 else []
