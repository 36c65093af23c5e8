"""Quantile normalisation of a metric over the whole pool, from a mergeable sketch.

SPEC: z-score -> min-max -> quantile transform to uniform. The first two steps are affine, so the result
is the quantile transform of the raw metric, as sklearn's
`QuantileTransformer(n_quantiles=min(n, 1000), output_distribution="uniform", subsample=None)`.

At scale the quantiles come from `QuantileSketch`: each block builds one, sketches merge in a tree, and the
merged sketch answers percentiles. A sketch keeps every value until it holds more than `capacity` points,
so below that it is exact (same numbers as numpy's linear percentile); above it, it keeps `capacity`
weighted points at evenly spaced ranks plus the exact min and max, with rank error about
depth_of_merge_tree / (2 * capacity). Pure numpy; NaN values are ignored (sklearn keeps NaN as NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QuantileSketch:
    """Sorted `values` with float `weights` (counts they stand for), plus exact `lo`/`hi` and `count`."""

    values: np.ndarray
    weights: np.ndarray
    count: float
    lo: float
    hi: float
    capacity: int = 65536

    @classmethod
    def of(cls, x: np.ndarray, capacity: int = 65536) -> QuantileSketch:
        """Sketch of the finite values of x: (n,)."""
        x = np.sort(np.asarray(x, dtype=float)[~np.isnan(x)])
        sk = cls(x, np.ones_like(x), float(len(x)), x[0] if len(x) else np.nan,
                 x[-1] if len(x) else np.nan, capacity)
        return sk.compressed()

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        v = np.concatenate([self.values, other.values])
        w = np.concatenate([self.weights, other.weights])
        order = np.argsort(v, kind="stable")
        merged = QuantileSketch(v[order], w[order], self.count + other.count,
                                min(self.lo, other.lo), max(self.hi, other.hi), self.capacity)
        return merged.compressed()

    def ranks(self) -> np.ndarray:
        """0-based rank at the centre of each point's weight span (== index when every weight is 1)."""
        return np.cumsum(self.weights) - self.weights + (self.weights - 1.0) / 2.0

    def compressed(self) -> QuantileSketch:
        if len(self.values) <= self.capacity:
            return self
        m = self.capacity
        step = self.count / m
        targets = (np.arange(m) + 0.5) * step - 0.5
        values = np.interp(targets, self.ranks(), self.values)
        return QuantileSketch(values, np.full(m, step), self.count, self.lo, self.hi, self.capacity)

    def percentile(self, p: np.ndarray) -> np.ndarray:
        """Values at fractions p in [0, 1], numpy's "linear" method (position p * (count - 1))."""
        if self.count == 0:
            return np.full(np.shape(p), np.nan)
        if len(self.values) == self.count:
            # exact (every value kept): numpy's own percentile arithmetic, which sklearn's fit uses. The
            # rank interpolation below is as exact in value but not in the last bit, and on tied values
            # (means of integer ratings) one bit moves the tie run's edge by a quantile: 0.5/(q-1) in q
            return np.percentile(self.values, np.asarray(p, dtype=float) * 100)
        pos = np.asarray(p, dtype=float) * (self.count - 1)
        r = np.concatenate([[0.0], self.ranks(), [self.count - 1]])
        v = np.concatenate([[self.lo], self.values, [self.hi]])
        return np.interp(pos, r, v)

    def to_dict(self) -> dict:
        return {"values": self.values, "weights": self.weights, "count": self.count,
                "lo": self.lo, "hi": self.hi, "capacity": self.capacity}

    @classmethod
    def from_dict(cls, d: dict) -> QuantileSketch:
        return cls(np.asarray(d["values"], float), np.asarray(d["weights"], float), float(d["count"]),
                   float(d["lo"]), float(d["hi"]), int(d["capacity"]))


def merge_all(sketches: list[QuantileSketch]) -> QuantileSketch:
    """Merge pairwise in a balanced tree (keeps the rank error at log2(len) compressions)."""
    level = list(sketches)
    if not level:
        raise ValueError("merge_all needs at least one sketch")
    while len(level) > 1:
        level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def fit_quantiles(sketch: QuantileSketch, n_rows: int, n_quantiles: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(quantiles, references) for `n_rows` pool rows, as QuantileTransformer.fit: (q,), (q,)."""
    q = max(1, min(n_rows, n_quantiles))
    references = np.linspace(0, 1, q, endpoint=True)
    quantiles = np.maximum.accumulate(sketch.percentile(references))
    return quantiles, references


def quantile_transform(x: np.ndarray, quantiles: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) in [0, 1]; sklearn's `_transform_col` for a uniform output. NaN stays NaN.

    Interpolates up and down and averages, so repeated quantiles (ties) map to the middle of their span.
    """
    x = np.asarray(x, dtype=float).copy()
    if np.all(np.isnan(quantiles)):
        return np.full_like(x, np.nan)
    finite = ~np.isnan(x)
    with np.errstate(invalid="ignore"):
        lower = x == quantiles[0]
        upper = x == quantiles[-1]
    xf = x[finite]
    x[finite] = 0.5 * (np.interp(xf, quantiles, references)
                       - np.interp(-xf, -quantiles[::-1], -references[::-1]))
    x[upper & finite] = 1.0
    x[lower & finite] = 0.0
    return x
