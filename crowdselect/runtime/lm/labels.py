"""The rating labels' token sequences as a trie: which next-token probabilities a judge needs.

A rating such as "10" may be one token or several ("1", "0"); `LabelTrie.steps()` lists the prefixes after
which the model's next-token probabilities are needed and `children(prefix)` the tokens asked for there. The
model backends (`hf.py`, `vllm.py`) compute those steps; the score math is `crowdselect.reward.scoring`.
Pure: no torch, no models.
"""

from __future__ import annotations

from dataclasses import dataclass

Prefix = tuple[int, ...]


@dataclass(frozen=True)
class LabelTrie:
    """Token sequences of the rating labels. `labels[k]` = token ids of rating `values[k]`."""

    values: tuple[int, ...]
    labels: tuple[Prefix, ...]

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"two ratings share a token sequence: {self.labels}")
        if any(len(seq) == 0 for seq in self.labels):
            raise ValueError("a rating label has no tokens")

    def children(self, prefix: Prefix) -> list[int]:
        """Distinct next tokens after `prefix` on the way to some label, in first-seen order."""
        out: list[int] = []
        for seq in self.labels:
            if len(seq) > len(prefix) and seq[: len(prefix)] == prefix and seq[len(prefix)] not in out:
                out.append(seq[len(prefix)])
        return out

    def steps(self) -> list[Prefix]:
        """Prefixes whose next-token probabilities are needed: () first, then every non-empty proper prefix
        of a label (sorted). For single-token labels this is just [()]."""
        return [()] + sorted({seq[:j] for seq in self.labels for j in range(1, len(seq))})

    @property
    def max_depth(self) -> int:
        return max(len(seq) for seq in self.labels)
