"""The figures of report.html, each a function from plain arrays / dicts to PNG bytes (matplotlib, Agg).
No file reading here (crowdselect/report/html.py gathers the data); nothing is drawn from the network.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

POOL, PICKED = "#9aa7b8", "#c8553d"


def pyplot():
    """matplotlib.pyplot on the Agg backend, with user text drawn as written: every crowdselect plot starts
    here. Names in figures come from users (generators, strategies, categories), and matplotlib would read a
    `$...$` in one as mathtext (a parse error for `$\\foo{$`, or a formula where a name was meant), or
    hand it to LaTeX with usetex. Raises ImportError without matplotlib (`crowdselect[plot]`)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"text.parse_math": False, "text.usetex": False})
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = 90) -> bytes:
    """A matplotlib figure -> PNG bytes (laid out tight), the figure closed. Every crowdselect plot ends here."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def metric_histograms(metrics: dict[str, np.ndarray], selected: np.ndarray) -> bytes:
    """One panel per metric: the pool's distribution and the selected rows' (density), NaNs left out.
    metrics: name -> (n,); selected: (n,) bool."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], metrics.items(), strict=True):
        ok = ~np.isnan(values)
        if ok.any():
            bins = np.histogram_bin_edges(values[ok], bins=20)
            ax.hist(values[ok], bins=bins, density=True, color=POOL, label="pool")
            if (ok & selected).any():
                ax.hist(values[ok & selected], bins=bins, density=True, color=PICKED, alpha=0.7, label="selected")
        else:
            ax.text(0.5, 0.5, "undefined for this crowd", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    return png_bytes(fig)


def correlation_heatmap(metrics: dict[str, np.ndarray]) -> bytes:
    """Pearson correlations between the metric columns (rows where all are defined)."""
    plt = pyplot()
    names = list(metrics)
    data = np.column_stack([metrics[n] for n in names])
    data = data[~np.isnan(data).any(axis=1)]
    corr = np.corrcoef(data, rowvar=False) if len(data) > 2 else np.full((len(names), len(names)), np.nan)
    corr = np.atleast_2d(corr)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    im = ax.imshow(np.nan_to_num(corr), vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, "—" if np.isnan(corr[i, j]) else f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return png_bytes(fig)


def reward_by_generator(generators: list[dict[str, Any]], mean_reward: dict[str, float]) -> bytes:
    """Left: mean reward per generator, grouped by family. Right: per-family size curves (log size)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    gens = [g for g in generators if g["name"] in mean_reward]
    gens.sort(key=lambda g: (g.get("family") or "", g.get("size_b") or 0))
    families = list(dict.fromkeys(g.get("family") or g["name"] for g in gens))
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    ax1.bar([g["name"] for g in gens], [mean_reward[g["name"]] for g in gens],
            color=[colors[g.get("family") or g["name"]] for g in gens])
    ax1.set_ylabel("mean reward")
    ax1.tick_params(axis="x", labelrotation=60, labelsize=7)
    for f in families:
        fam = [g for g in gens if (g.get("family") or g["name"]) == f and g.get("size_b")]
        ax2.plot([g["size_b"] for g in fam], [mean_reward[g["name"]] for g in fam], "o-", color=colors[f], label=f)
    ax2.set_xscale("log")
    ax2.set_xlabel("size (B parameters)")
    ax2.set_ylabel("mean reward")
    ax2.legend(fontsize=7)
    return png_bytes(fig)


def cluster_projection(xy: np.ndarray, clusters: np.ndarray, selected: np.ndarray) -> bytes:
    """Rows at their 2-D coordinates (n, 2) (the select run's pc1, pc2), coloured by cluster, selected ringed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(xy[:, 0], xy[:, 1], c=clusters, cmap="tab10", s=10, alpha=0.6)
    ax.scatter(xy[selected, 0], xy[selected, 1], facecolors="none", edgecolors="black", s=45, linewidths=1,
               label="selected")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7)
    return png_bytes(fig)


def cluster_quotas(clusters: np.ndarray, selected: np.ndarray) -> bytes:
    """Rows per cluster in the pool and selected from it, on one axis, each bar labelled with its count
    (a second axis would draw 2 selected as high as 8 in the pool). clusters: (n,) int; selected: (n,) bool."""
    plt = pyplot()
    ids = np.unique(clusters)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(ids) + 2), 3.0))
    pool = ax.bar(ids - 0.2, [(clusters == c).sum() for c in ids], width=0.4, color=POOL, label="pool")
    picked = ax.bar(ids + 0.2, [(selected & (clusters == c)).sum() for c in ids], width=0.4, color=PICKED,
                    label="selected")
    for bars in (pool, picked):
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.margins(y=0.12)  # room for the labels above the tallest bar
    ax.set_xlabel("cluster")
    ax.set_ylabel("rows")
    ax.set_xticks(ids)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def loss_curves(curves: dict[str, list[tuple[int, float]]]) -> bytes:
    """Training loss per optimizer step, one line per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", markersize=3, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    return png_bytes(fig)


def scores_by_category(by_model: dict[str, dict[str, float | None]], ylabel: str) -> bytes:
    """Grouped bars: a category per group, a model (or cell) per bar."""
    plt = pyplot()
    cats = sorted({c for v in by_model.values() for c in v})
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(cats) + 2), 3))
    width = 0.8 / max(1, len(by_model))
    for i, (name, scores) in enumerate(by_model.items()):
        ax.bar(np.arange(len(cats)) + i * width, [scores.get(c) or 0 for c in cats], width=width, label=name)
    ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats, rotation=30, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return png_bytes(fig)
