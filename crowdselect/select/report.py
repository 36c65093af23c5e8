"""The end-of-run summary table (summary.txt) and a plot of the metric distributions (metrics.png).

The summary shows counts (input = accepted + rejected), per-cluster pool size / quota / selected, and the
pool's vs the selection's metric distributions. The plot draws, per metric, the pool's CDF (from the
global quantiles) against the selected rows' CDF. matplotlib is optional: without it no plot is drawn.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.select.config import SelectConfig


def cluster_sizes(scored) -> dict[int, int]:
    def count(batch: pa.Table) -> pa.Table:
        labels, n = np.unique(batch.column(C.CLUSTER).to_numpy(), return_counts=True)
        return pa.table({"c": labels, "n": n})

    sizes: dict[int, int] = {}
    for r in scored.map_batches(count, batch_format="pyarrow", batch_size=None).take_all():
        sizes[int(r["c"])] = sizes.get(int(r["c"]), 0) + int(r["n"])
    return dict(sorted(sizes.items()))


FRACTIONS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _dist_line(name: str, points: np.ndarray | None, rows: int) -> str:
    if points is None or rows == 0:
        return f"  {name:<13}{'(undefined)':>12}"
    return f"  {name:<13}" + "".join(f"{x:>10.4g}" for x in points) + f"{rows:>9,}"


def summarise(cfg: SelectConfig, counts: dict, chosen: list[dict], scored, quantiles: dict,
              decisions: list[str], clustering: bool, defined: dict) -> str:
    sel = cfg.selection
    lines = ["", "crowdselect selection summary", "=" * 64,
             f"input rows {counts['input_rows']:>10,}  = accepted {counts['accepted_rows']:,} "
             f"+ rejected {counts['rejected_rows']:,}",
             f"instructions {counts['accepted_instructions']:>8,}  selected {len(chosen):,} "
             f"(strategy {sel.strategy}, weights {sel.weights})"]
    if clustering:
        sizes = cluster_sizes(scored)
        picked: dict[int, int] = {}
        for r in chosen:
            picked[int(r[C.CLUSTER])] = picked.get(int(r[C.CLUSTER]), 0) + 1
        quota = sel.k // sel.clusters
        lines += ["", f"clusters (quota {quota} each, remainder by score)", "  cluster      pool  selected"]
        lines += [f"  {c:>7} {n:>9,} {picked.get(c, 0):>9}" for c, n in sizes.items()]
    header = "  metric" + " " * 7 + "".join(f"{h:>10}" for h in ("min", "p25", "median", "p75", "max")) + "     rows"
    lines += ["", "metric distributions: pool (from the global quantiles)", header]
    for m in C.METRICS:
        qs, refs = quantiles[m]
        lines.append(_dist_line(m, np.interp(FRACTIONS, refs, qs), defined[m]))
    lines += ["", "metric distributions: selected", header]
    for m in C.METRICS:
        v = np.array([r[m] for r in chosen if r[m] is not None and not np.isnan(r[m])], float)
        lines.append(_dist_line(m, np.percentile(v, [100 * f for f in FRACTIONS]) if len(v) else None, len(v)))
    if decisions:
        lines += ["", "notes:"] + [f"  - {d}" for d in decisions]
    lines += ["", f"outputs in {cfg.out}: selected.jsonl, scores.parquet/, exports/, run.json, summary.txt"]
    text = "\n".join(lines) + "\n"
    storage.write_text(storage.join(cfg.out, "summary.txt"), text)
    plot_metrics(cfg.out, quantiles, chosen)
    return text


def plot_metrics(out: str, quantiles: dict, chosen: list[dict]) -> bool:
    """metrics.png: pool vs selected CDF per metric. False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, m in zip(axes, C.METRICS, strict=True):
        qs, refs = quantiles[m]
        if not np.isnan(qs).all():
            ax.plot(qs, refs, label="pool", color="0.4")
        v = np.sort([r[m] for r in chosen if r[m] is not None and not np.isnan(r[m])])
        if len(v):
            ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=f"selected ({len(v)})", color="C3")
        ax.set_title(m)
        ax.set_ylabel("CDF")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes(storage.join(out, "metrics.png"), buf.getvalue())
    return True
