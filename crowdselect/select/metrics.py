"""The three CrowdSelect metrics of an instruction, read off its row of the reward matrix.

Pure numpy: no Ray, no torch. `rewards` is always `(n_instructions, n_generators)` float64 with NaN where a
generator did not answer (or its reward is missing); generator columns follow the crowd config's order.

Conventions where the paper (arXiv 2503.01836) leaves a choice open:
- difficulty   D = -mean(r): higher = the crowd does worse.
- separability S = population variance of r (ddof 0).
- stability    T = mean over families with >= 2 answering members of Spearman(reward, size) in the family,
  using average ranks for ties. A family whose sizes are all tied has no defined correlation and is left
  out of the mean. One whose rewards are all tied (say, two sizes giving the same greedy answer) is left out
  too (`ties="undefined"`, scipy's and the authors' NaN), or counts as 0, no size signal (`ties="zero"`).
  No family defined -> NaN (undefined), never a made-up number.
"""

from __future__ import annotations

import warnings

import numpy as np


def reward_matrix(models: list[list[str]], rewards: list[list[float]], generators: list[str]) -> np.ndarray:
    """Scatter per-row (model, reward) lists into an (n, G) matrix, NaN where a generator is absent.

    >>> reward_matrix([["a", "b"], ["b"]], [[1.0, 2.0], [3.0]], ["a", "b"]).tolist()
    [[1.0, 2.0], [nan, 3.0]]
    """
    index = {g: j for j, g in enumerate(generators)}
    out = np.full((len(models), len(generators)), np.nan)
    for i, (ms, rs) in enumerate(zip(models, rewards, strict=True)):
        for m, r in zip(ms, rs, strict=True):
            out[i, index[m]] = np.nan if r is None else r
    return out


def difficulty(rewards: np.ndarray) -> np.ndarray:
    """(n, G) -> (n,): minus the mean reward over answered generators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return -np.nanmean(rewards, axis=1)


def separability(rewards: np.ndarray) -> np.ndarray:
    """(n, G) -> (n,): population variance (ddof 0) of the rewards over answered generators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanvar(rewards, axis=1)


def family_spearman(rewards: np.ndarray, sizes: np.ndarray, ties: str = "undefined") -> np.ndarray:
    """Spearman(reward, size) per row within one family.

    rewards: (n, m) with NaN for missing members; sizes: (m,). Returns (n,), NaN where fewer than 2
    members answered or the sizes are constant; where only the rewards are constant, NaN or 0 (`ties`).
    Ties get average ranks (Spearman = Pearson of ranks).

    >>> family_spearman(np.array([[5.0, 7.0], [6.0, 6.0]]), np.array([0.5, 1.5])).tolist()
    [1.0, nan]
    >>> family_spearman(np.array([[6.0, 6.0], [6.0, np.nan]]), np.array([0.5, 1.5]), ties="zero").tolist()
    [0.0, nan]
    """
    # imported here: the config check imports this module before any work, and scipy takes seconds to import
    from scipy.stats import rankdata

    present = ~np.isnan(rewards)
    size_grid = np.where(present, np.broadcast_to(sizes, rewards.shape), np.nan)
    rr = rankdata(rewards, axis=1, nan_policy="omit")
    rs = rankdata(size_grid, axis=1, nan_policy="omit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dr = rr - np.nanmean(rr, axis=1, keepdims=True)
        ds = rs - np.nanmean(rs, axis=1, keepdims=True)
        reward_var, size_var = np.nansum(dr * dr, axis=1), np.nansum(ds * ds, axis=1)
        rho = np.nansum(dr * ds, axis=1) / np.sqrt(reward_var * size_var)
    rho[~(reward_var > 0)] = 0.0 if ties == "zero" else np.nan
    rho[(present.sum(axis=1) < 2) | ~(size_var > 0)] = np.nan
    return np.clip(rho, -1.0, 1.0)


def stability(rewards: np.ndarray, families: list[str], sizes: list[float],
              ties: str = "undefined") -> np.ndarray:
    """(n, G) -> (n,): mean of per-family Spearman(reward, size) over families defined for the row.

    families, sizes: (G,) the family name and size in billions of each generator column; ties: as in
    `family_spearman`.
    """
    fam = np.asarray(families)
    size = np.asarray(sizes, dtype=float)
    per_family = []
    for name in dict.fromkeys(families):
        cols = np.flatnonzero(fam == name)
        if len(cols) >= 2:
            per_family.append(family_spearman(rewards[:, cols], size[cols], ties))
    if not per_family:
        return np.full(rewards.shape[0], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(per_family, axis=1), axis=1)


def has_sized_families(families: list[str], sizes: list[float]) -> bool:
    """True when some family has generators of >= 2 distinct sizes, so stability can be defined at all.

    >>> has_sized_families(["a", "b", "a"], [1, 2, 7]), has_sized_families(["a", "b", "a"], [7, 2, 7])
    (True, False)
    """
    return any(len(set(s)) >= 2 for s in _family_sizes(families, sizes).values())


def one_size_families(families: list[str], sizes: list[float]) -> dict[str, float]:
    """Families of >= 2 generators that all have one size -> that size: they can never rank by size.

    >>> one_size_families(["q", "q", "g", "g"], [7, 7, 2, 9])
    {'q': 7}
    """
    return {f: s[0] for f, s in _family_sizes(families, sizes).items() if len(s) >= 2 and len(set(s)) == 1}


def _family_sizes(families: list[str], sizes: list[float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for f, s in zip(families, sizes, strict=True):
        out.setdefault(f, []).append(s)
    return out


def best_answer(rewards: np.ndarray) -> np.ndarray:
    """(n, G) -> (n,) column index of the highest reward; ties go to the earliest generator in config order."""
    filled = np.where(np.isnan(rewards), -np.inf, rewards)
    return np.argmax(filled, axis=1)
