"""Row plumbing shared by the scoring stages: column checks, text cells, truncating encoders, and running a
model over length-sorted micro-batches so that one failing row costs only that row.

A failing row is never dropped: its output cell is NaN/empty and its error column says why. The
micro-batching itself (`run_microbatches`) and `object_column` live in `crowdselect.runtime.lm.batches`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from crowdselect.runtime.lm.batches import run_microbatches
from crowdselect.runtime.lm.budget import head, split_budget, tail

__all__ = ["PairEncoder", "RowError", "check_columns", "float_column", "score_rows", "text_cell"]


class RowError(ValueError):
    """A row that cannot be scored (missing text, too long); the message is the reason kept in the output."""


def check_columns(stage: str, batch: Mapping[str, Any], needed: Sequence[str]) -> int:
    """Number of rows; a missing column is a wiring bug and raises naming the stage and the columns."""
    missing = [c for c in needed if c not in batch]
    if missing:
        raise KeyError(f"{stage}: batch lacks column(s) {missing}; it has {sorted(batch)}")
    return len(batch[needed[0]]) if needed else 0


def text_cell(batch: Mapping[str, Any], column: str, i: int) -> str:
    """The text at (column, row i); None, NaN or a non-string raise RowError (an empty string is text)."""
    value = batch[column][i]
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):  # Ray's null
        raise RowError(f"no {column}")
    if not isinstance(value, str):
        raise RowError(f"{column} is {type(value).__name__}, not text")
    return value


class PairEncoder:
    """(instruction, response, **extras) -> token ids of at most `max_length - reserve` tokens.

    `render(instruction, response, **extras)` gives the full token ids (chat template and all). The
    truncation policy is RewardSpec's: `head_tail` keeps the instruction's head and the response's tail
    (split by `split_budget`), `left` drops the first tokens of the rendered sequence, `error` refuses.
    """

    def __init__(self, tokenizer: Any, render: Callable[..., list[int]], max_length: int, truncation: str,
                 prompt_share: float, reserve: int = 0):
        self.tok, self.render = tokenizer, render
        self.limit = max_length - reserve
        self.truncation, self.prompt_share = truncation, prompt_share

    def encode(self, instruction: str, response: str, **extras: str) -> list[int]:
        ids = self.render(instruction, response, **extras)
        if len(ids) <= self.limit:
            return ids
        if self.truncation == "error":
            raise RowError(f"too long: {len(ids)} tokens > max_length {self.limit} (truncation: error)")
        if self.truncation == "left":
            return ids[len(ids) - self.limit:]
        i_ids = self.tok.encode(instruction, add_special_tokens=False)
        r_ids = self.tok.encode(response, add_special_tokens=False)
        budget = self.limit - (len(ids) - len(i_ids) - len(r_ids))
        for _ in range(4):  # decode/re-encode may merge tokens at the seams; shave the excess and retry
            if budget <= 0:
                break
            keep_i, keep_r = split_budget(len(i_ids), len(r_ids), budget, self.prompt_share)
            ids = self.render(self.tok.decode(head(i_ids, keep_i)), self.tok.decode(tail(r_ids, keep_r)),
                              **extras)
            if len(ids) <= self.limit:
                return ids
            budget -= len(ids) - self.limit
        raise RowError(f"too long: the template and fixed fields alone exceed max_length {self.limit}")


def score_rows(n: int, encode: Callable[[int], Any], length: Callable[[Any], int],
               fn: Callable[[list[Any]], Sequence[Any]], max_rows: int, max_tokens: int,
               stage: str) -> tuple[list[Any], list[str | None]]:
    """Encode rows 0..n-1 (`encode(i)`, RowError = that row's error), then run `fn` over length-sorted
    micro-batches of the encoded ones (`run_microbatches`). Returns (results, errors) for all n rows;
    a failed row has result None and its error text."""
    encoded: list[Any] = [None] * n
    errors: list[str | None] = [None] * n
    for i in range(n):
        try:
            encoded[i] = encode(i)
        except RowError as e:
            errors[i] = str(e)
    todo = [i for i in range(n) if errors[i] is None]
    done, run_errors = run_microbatches([encoded[i] for i in todo], [length(encoded[i]) for i in todo],
                                        max_rows, max_tokens, fn, stage)
    results: list[Any] = [None] * n
    for i, r, err in zip(todo, done, run_errors, strict=True):
        results[i], errors[i] = (r if err is None else None), err
    return results, errors


def float_column(results: Sequence[Any]) -> np.ndarray:
    """(n,) float64, NaN where the result is None."""
    return np.array([np.nan if r is None else float(r) for r in results], dtype=np.float64)
