"""Pure token-budget helpers: how much of an (instruction, response) pair fits, and length-sorted micro-batches.

No tokenizer or torch here: callers pass token counts and get counts or index lists back.
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


def length_batches(lengths: list[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Row indices grouped into micro-batches of similar length: sorted by length (ties by index), each
    batch at most `max_rows` rows and at most `max_tokens` padded tokens (rows x longest row); a row longer
    than `max_tokens` gets a batch of its own.

    lengths: (n,) token counts. Returns batches of indices covering every row exactly once.

    >>> length_batches([5, 1, 5, 2], max_rows=2, max_tokens=100)
    [[1, 3], [0, 2]]
    >>> length_batches([4, 4, 4], max_rows=8, max_tokens=8)
    [[0, 1], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max([lengths[j] for j in current] + [lengths[i]])
        if current and (len(current) >= max_rows or longest * (len(current) + 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
