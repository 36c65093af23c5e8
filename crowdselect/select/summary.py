"""The end-of-run summary (summary.txt) and a plot of the metric distributions (metrics.png).

Four pieces, one job each:
- `gather_facts`: the Ray passes (cluster sizes, each metric's moments over the scored pool, each generator's
  reward moments over the crowd) -> a `SummaryFacts` of plain numbers and the selected rows;
- `summary_text`: `SummaryFacts` -> the text (pure, no I/O);
- `write_summary`: the text -> DIR/summary.txt;
- `plot_metrics`: per metric, the pool's CDF (from the global quantiles) against the selected rows' CDF
  (matplotlib is optional: without it no plot is drawn).
`summarise` runs the first two (no I/O); the job writes after every output is computed.

The text shows counts (input = accepted + rejected), per-cluster pool size / quota / selected, the mean and
standard deviation of the primary reward per generator (how far the reward model tells the crowd apart), on
how many instructions each metric is defined, each metric's spread (mean, std, quantiles) in the pool and the
selection, and the first selected examples (instruction, best answer) in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.core.text import printable, show
from crowdselect.report.figures import png_bytes, pyplot
from crowdselect.select.blocks import moments_block, reward_matrix_arrow
from crowdselect.select.config import SelectConfig

FRACTIONS = [0.0, 0.25, 0.5, 0.75, 1.0]
EXAMPLES = 3  # selected examples printed in full
RULE = "=" * 64


@dataclass(frozen=True)
class Moments:
    """Count, mean and population standard deviation of the defined (non-NaN) values of one quantity."""

    n: int
    mean: float
    std: float

    @classmethod
    def of(cls, n: float, total: float, squares: float) -> Moments:
        if n == 0:
            return cls(0, float("nan"), float("nan"))
        mean = total / n
        return cls(int(n), mean, float(np.sqrt(max(squares / n - mean * mean, 0.0))))


@dataclass
class SummaryFacts:
    """Everything the summary text shows, gathered once (see `gather_facts`)."""

    counts: dict
    strategy: str
    weights: list
    k: int
    clusters: int
    out: str
    chosen: list[dict]
    quantiles: dict
    defined: dict
    decisions: list[str]
    cluster_sizes: dict[int, int] | None = None  # None: no clustering
    metric_moments: dict[str, Moments] = field(default_factory=dict)  # over the scored pool
    generator_rewards: dict[str, Moments] = field(default_factory=dict)  # primary reward per generator


def _reward_block(batch: pa.Table, generators: list[str]) -> pa.Table:
    """One row per generator: count, sum and sum of squares of its rewards in the block's crowd rows."""
    R, _ = reward_matrix_arrow(batch.column(C.MODELS).combine_chunks(), batch.column(C.REWARDS).combine_chunks(),
                               generators)
    ok = ~np.isnan(R)
    V = np.where(ok, R, 0.0)
    return pa.table({"name": generators, "n": ok.sum(axis=0).tolist(), "s": V.sum(axis=0).tolist(),
                     "ss": (V * V).sum(axis=0).tolist()})


def merge_moments(rows: list[dict]) -> dict[str, Moments]:
    """Sum per-block (name, n, s, ss) rows by name, in first-seen order."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        a = acc.setdefault(r["name"], [0.0, 0.0, 0.0])
        a[0], a[1], a[2] = a[0] + r["n"], a[1] + r["s"], a[2] + r["ss"]
    return {name: Moments.of(*a) for name, a in acc.items()}


def _merge_moments(ds, fn, fn_kwargs: dict) -> dict[str, Moments]:
    """`merge_moments` of `fn`'s rows over every block of `ds` (one pass)."""
    return merge_moments(ds.map_batches(fn, batch_format="pyarrow", batch_size=None, fn_kwargs=fn_kwargs).take_all())


def cluster_sizes(scored) -> dict[int, int]:
    """Rows per cluster label of the scored dataset (one Ray pass)."""
    def count(batch: pa.Table) -> pa.Table:
        labels, n = np.unique(batch.column(C.CLUSTER).to_numpy(), return_counts=True)
        return pa.table({"c": labels, "n": n})

    sizes: dict[int, int] = {}
    for r in scored.map_batches(count, batch_format="pyarrow", batch_size=None).take_all():
        sizes[int(r["c"])] = sizes.get(int(r["c"]), 0) + int(r["n"])
    return dict(sorted(sizes.items()))


def gather_facts(cfg: SelectConfig, counts: dict, chosen: list[dict], scored, quantiles: dict,
                 decisions: list[str], clustering: bool, defined: dict, crowd=None,
                 metric_moments: dict[str, Moments] | None = None) -> SummaryFacts:
    """The Ray passes behind the summary. `crowd` (accepted canonical rows) adds per-generator rewards;
    `metric_moments` (the metrics' and best reward's moments over the scored rows, when the caller has them
    already) saves the pass over `scored` that finds them."""
    sel = cfg.selection
    if metric_moments is None:
        metric_cols = [*C.METRICS, *([C.BEST_REWARD] if C.BEST_REWARD in scored.schema().names else [])]
        metric_moments = _merge_moments(scored, moments_block, {"columns": metric_cols})
    facts = SummaryFacts(counts=counts, strategy=sel.strategy, weights=list(sel.weights), k=sel.k,
                         clusters=sel.clusters, out=cfg.out, chosen=chosen, quantiles=quantiles, defined=defined,
                         decisions=decisions, cluster_sizes=cluster_sizes(scored) if clustering else None,
                         metric_moments=metric_moments)
    if crowd is not None:
        facts.generator_rewards = _merge_moments(crowd, _reward_block,
                                                 {"generators": [g.name for g in cfg.generators]})
    return facts


def _dist_line(name: str, points: np.ndarray | None, rows: int, moments: Moments | None = None) -> str:
    if points is None or rows == 0:
        return f"  {name:<13}{'(undefined)':>12}"
    spread = f"{moments.mean:>9.4g}{moments.std:>9.4g}" if moments else " " * 18
    return f"  {name:<13}" + spread + "".join(f"{x:>9.4g}" for x in points) + f"{rows:>9,}"


def _finite(values) -> np.ndarray:
    v = np.array([np.nan if x is None else x for x in values], float)
    return v[~np.isnan(v)]


def _distribution_lines(f: SummaryFacts) -> list[str]:
    header = "  metric" + " " * 7 + "".join(f"{h:>9}" for h in ("mean", "std", "min", "p25", "median", "p75",
                                                                   "max")) + "     rows"
    n = f.counts["accepted_instructions"]
    lines = ["", "metrics defined on: " + ", ".join(f"{m} {f.defined[m]:,} of {n:,}" for m in C.METRICS),
             "", "metric distributions: pool (quantiles from the global sketch)", header]
    for m in C.METRICS:
        qs, refs = f.quantiles[m]
        lines.append(_dist_line(m, np.interp(FRACTIONS, refs, qs), f.defined[m], f.metric_moments.get(m)))
    lines += ["", "metric distributions: selected", header]
    for m in [*C.METRICS, C.BEST_REWARD]:
        v = _finite(r.get(m) for r in f.chosen)
        moments = Moments.of(len(v), v.sum(), (v * v).sum()) if len(v) else None
        lines.append(_dist_line(m, np.percentile(v, [100 * x for x in FRACTIONS]) if len(v) else None, len(v),
                                moments))
    return lines


def _reward_lines(f: SummaryFacts) -> list[str]:
    if not f.generator_rewards:
        return []
    lines = ["", "primary reward per generator", f"  {'generator':<28}{'answers':>8}{'mean':>9}{'std':>9}"]
    lines += [f"  {g:<28}{m.n:>8,}{m.mean:>9.4g}{m.std:>9.4g}" for g, m in f.generator_rewards.items()]
    n = sum(m.n for m in f.generator_rewards.values())
    total = Moments.of(n, sum(m.n * m.mean for m in f.generator_rewards.values() if m.n),
                       sum(m.n * (m.std ** 2 + m.mean ** 2) for m in f.generator_rewards.values() if m.n))
    lines.append(f"  {'all answers':<28}{total.n:>8,}{total.mean:>9.4g}{total.std:>9.4g}")
    sep = f.metric_moments.get(C.SEPARABILITY)
    if sep is not None and sep.n:
        lines.append(f"  per-instruction separability (reward variance across the crowd): mean {sep.mean:.4g}, "
                     f"std {sep.std:.4g}")
    return lines


def _example_lines(f: SummaryFacts) -> list[str]:
    lines = []
    for i, r in enumerate(f.chosen[:EXAMPLES], start=1):
        reward = r.get(C.BEST_REWARD)
        lines += ["", f"--- selected example {i} of {len(f.chosen)}: id {show(r[C.ID], 200, layout=False)}, "
                  f"cluster {r.get(C.CLUSTER)}, score {r.get(C.SCORE, float('nan')):.4g}; best answer by "
                  f"{printable(r.get(C.BEST_MODEL), layout=False)} "
                  f"(reward {float('nan') if reward is None else reward:.4g})",
                  "[instruction]", show(str(r.get(C.INSTRUCTION, "")).rstrip()),
                  "[answer]", show(str(r.get(C.BEST_RESPONSE, "")).rstrip())]
    return lines


def summary_text(f: SummaryFacts) -> str:
    """The summary as text; pure (see the module docstring for what it shows)."""
    c = f.counts
    lines = ["", "crowdselect selection summary", RULE,
             f"input rows {c['input_rows']:>10,}  = accepted {c['accepted_rows']:,} + rejected {c['rejected_rows']:,}"
             + (f" + decontaminated {c['decontaminated_rows']:,}" if c.get("decontaminated_rows") else ""),
             f"instructions {c['accepted_instructions']:>8,}  selected {len(f.chosen):,} "
             f"(strategy {f.strategy}, weights {f.weights})"]
    if f.cluster_sizes is not None:
        picked: dict[int, int] = {}
        for r in f.chosen:
            picked[int(r[C.CLUSTER])] = picked.get(int(r[C.CLUSTER]), 0) + 1
        lines += ["", f"clusters (quota {f.k // f.clusters} each, remainder by score)", "  cluster      pool  selected"]
        lines += [f"  {k:>7} {n:>9,} {picked.get(k, 0):>9}" for k, n in f.cluster_sizes.items()]
    lines += _reward_lines(f) + _distribution_lines(f)
    if f.decisions:
        lines += ["", "notes:"] + [f"  - {d}" for d in f.decisions]
    lines += _example_lines(f)
    lines += ["", RULE, f"outputs in {f.out}: selected.jsonl, scores.parquet/, exports/, run.json, summary.txt"]
    return "\n".join(lines) + "\n"


def write_summary(out: str, text: str) -> str:
    """Write DIR/summary.txt; returns its path."""
    path = storage.join(out, "summary.txt")
    storage.write_text(path, text)
    return path


def summarise(cfg: SelectConfig, counts: dict, chosen: list[dict], scored, quantiles: dict,
              decisions: list[str], clustering: bool, defined: dict, crowd=None,
              metric_moments: dict[str, Moments] | None = None) -> tuple[str, SummaryFacts]:
    """gather_facts -> summary_text; returns the text and the facts. Writes nothing (the job writes the text
    with `write_summary` and the plot with `plot_metrics` once every output is computed)."""
    facts = gather_facts(cfg, counts, chosen, scored, quantiles, decisions, clustering, defined, crowd,
                         metric_moments)
    return summary_text(facts), facts


def plot_metrics(out: str, quantiles: dict, chosen: list[dict]) -> bool:
    """metrics.png: pool vs selected CDF per metric. False when matplotlib is not installed."""
    try:
        plt = pyplot()
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, m in zip(axes, C.METRICS, strict=True):
        qs, refs = quantiles[m]
        if not np.isnan(qs).all():
            ax.plot(qs, refs, label="pool", color="0.4")
        v = np.sort(_finite(r[m] for r in chosen))
        if len(v):
            ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=f"selected ({len(v)})", color="C3")
        ax.set_title(m)
        ax.set_ylabel("CDF")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    storage.write_bytes(storage.join(out, "metrics.png"), png_bytes(fig, dpi=110))
    return True
