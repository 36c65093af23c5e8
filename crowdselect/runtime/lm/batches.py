"""Micro-batches: length-sorted groups under a row and token budget, left padding, per-row errors.

    groups = length_batches(lengths, max_rows, max_tokens)               # pure: index lists
    ids, mask, pos = left_pad(seqs, pad_id, device)                      # (n, longest) tensors
    results, errors = run_microbatches(items, lengths, max_rows, max_tokens, fn, stage)

`run_microbatches` is how every model stage (generation, rewards, baselines, eval) runs its model over a Ray
Data batch: a micro-batch that raises is retried row by row, so one bad row costs only itself.
`object_column` turns a result list into the object column a Ray Data numpy batch needs. Knows nothing of
models or Ray; torch is imported only by `left_pad`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crowdselect.core.secrets import scrub_secrets

log = logging.getLogger(__name__)


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


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, position_ids), each (n, longest) long tensors; padding on the left so
    every sequence ends at the last column, positions counted from each sequence's first real token."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in seqs], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def object_column(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array (strings with None, lists), safe for Ray Data batches."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def run_microbatches(items: Sequence[Any], lengths: Sequence[int], max_rows: int, max_tokens: int,
                     fn: Callable[[list[Any]], Sequence[Any]], stage: str) -> tuple[list[Any], list[str | None]]:
    """Apply `fn` (a list of items -> one result per item) over length-sorted micro-batches of at most
    `max_rows` rows and `max_tokens` padded tokens.

    Returns (results, errors) aligned with `items`; a micro-batch that raises is retried row by row, and
    a row that still raises gets result None and its error text ("STAGE: Type: message").
    """
    results: list[Any] = [None] * len(items)
    errors: list[str | None] = [None] * len(items)
    for group in length_batches(list(lengths), max_rows, max_tokens):
        try:
            for i, r in zip(group, fn([items[i] for i in group]), strict=True):
                results[i] = r
            continue
        except Exception as e:  # isolate the failing row(s); the rest of the micro-batch is still scored
            if len(group) == 1:
                errors[group[0]] = scrub_secrets(f"{stage}: {type(e).__name__}: {e}")
                log.warning("%s: row failed: %s", stage, scrub_secrets(str(e)))
                continue
            log.warning("%s: micro-batch of %d failed (%s); retrying row by row", stage, len(group),
                        scrub_secrets(str(e)))
        for i in group:
            try:
                results[i] = fn([items[i]])[0]
            except Exception as e:  # recorded in the row's error column
                errors[i] = scrub_secrets(f"{stage}: {type(e).__name__}: {e}")
    return results, errors
