"""The results of an experiment, laid out like the paper's Table 2: rows strategies, columns students x
(MT-bench mean, turn 1, turn 2, pairwise win rate, and the judge-free PROXY when that is what was run);
mean ± spread (sample standard deviation) over seeds; the best in each column in bold; the delta against
the baseline strategy (random) in parentheses. `aggregate` and `render_table` are pure.

Writes results.csv (one row per strategy x student x metric), results.md, results.png, experiment.json
(the lineage of every number: crowd, reward models, strategy, selection digest, student, training config,
judge, and each cell's folders).
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from typing import Any

from crowdselect.core import jsonout, storage
from crowdselect.core.secrets import scrub_config
from crowdselect.report.figures import png_bytes, pyplot

RESULT_FILES = ("results.csv", "results.md", "results.png", "experiment.json")  # what write_results writes
METRICS = {  # column -> (label, how to read it from an eval summary.json)
    "mtbench": ("MT-bench", lambda s: s.get("mean")),
    "turn1": ("turn 1", lambda s: (s.get("by_turn") or {}).get("1")),
    "turn2": ("turn 2", lambda s: (s.get("by_turn") or {}).get("2")),
    "winrate": ("win rate", lambda s: (s.get("pairwise") or {}).get("win_rate")),
    "proxy": ("PROXY reward", lambda s: next(iter(((s.get("proxy") or {}).get("mean_reward") or {}).values()), None)),
}


def aggregate(cells: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Rows {strategy, student, metric, mean, spread, seeds, delta, best} over the done cells.

    >>> cells = [{"status": "done", "strategy": {"name": n}, "student": {"name": "s"}, "summary": {"mean": m}}
    ...          for n, m in (("random", 5.0), ("crowdselect", 6.0), ("crowdselect", 7.0))]
    >>> [(r["strategy"], r["mean"], r["spread"], r["delta"], r["best"]) for r in aggregate(cells, "random")]
    [('random', 5.0, None, 0.0, False), ('crowdselect', 6.5, 0.7071, 1.5, True)]
    """
    values: dict[tuple[str, str, str], list[float]] = {}
    for c in cells:
        if c.get("status") != "done":
            continue
        for metric, (_, read) in METRICS.items():
            v = read(c["summary"])
            if v is not None:
                values.setdefault((c["strategy"]["name"], c["student"]["name"], metric), []).append(float(v))
    order = list(dict.fromkeys(k[0] for k in values))
    rows = []
    for (strategy, student, metric), vs in sorted(values.items(), key=lambda kv: order.index(kv[0][0])):
        base = values.get((baseline, student, metric))
        mean = round(statistics.fmean(vs), 4)
        rows.append({"strategy": strategy, "student": student, "metric": metric, "mean": mean,
                     "spread": round(statistics.stdev(vs), 4) if len(vs) > 1 else None, "seeds": len(vs),
                     "delta": round(mean - statistics.fmean(base), 4) if base else None})
    for r in rows:
        col = [x["mean"] for x in rows if (x["student"], x["metric"]) == (r["student"], r["metric"])]
        r["best"] = len(col) > 1 and r["mean"] == max(col)
    return rows


def md_cell(text: Any) -> str:
    """User text (a strategy or student name) as one Markdown table cell or list line: `|` escaped, line
    breaks as one space, so that no name can end a row or add a column.

    >>> md_cell("a|b\\nc")
    'a\\\\|b c'
    """
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).replace("|", r"\|")


def render_table(rows: list[dict[str, Any]], baseline: str) -> str:
    """Markdown table: strategies x (student, metric); `mean ± spread (Δ vs baseline)`, best in bold."""
    cols = list(dict.fromkeys((r["student"], r["metric"]) for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    at = {(r["strategy"], r["student"], r["metric"]): r for r in rows}
    head = "| strategy | " + " | ".join(f"{md_cell(s)}: {METRICS[m][0]}" for s, m in cols) + " |"
    lines = [head, "|---|" + "---|" * len(cols)]
    for st in strategies:
        cells = []
        for s, m in cols:
            r = at.get((st, s, m))
            if r is None:
                cells.append("—")
                continue
            text = f"{r['mean']:.3f}" + (f" ± {r['spread']:.3f}" if r["spread"] is not None else "")
            text = f"**{text}**" if r["best"] else text
            if st != baseline and r["delta"] is not None:
                text += f" ({r['delta']:+.3f})"
            cells.append(text)
        lines.append(f"| {md_cell(st)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(cfg, rows: list[dict[str, Any]], cells: list[dict[str, Any]], seconds: float) -> str:
    done = [c for c in cells if c["status"] == "done"]
    proxy_only = rows and all(r["metric"] == "proxy" for r in rows)
    parts = ["# Experiment: strategies compared by the students they train", ""]
    if cfg.note:  # every line of a note quoted: a line of its own could start a table row
        parts += [f"> {line}" for line in cfg.note.strip().splitlines()] + [""]
    if proxy_only:
        parts += ["> Scores are a PROXY (the run's reward model scoring answers to held-out instructions), "
                  "not MT-bench.", ""]
    parts += [f"k = {cfg.k}, clusters = {cfg.clusters}, seeds = {cfg.seeds}; {len(done)}/{len(cells)} cells done "
              f"in {seconds:.0f} s. Mean ± standard deviation over seeds; best per column in bold; "
              f"(±x) is the difference from `{cfg.baseline}`.", "", render_table(rows, cfg.baseline) if rows else
              "(no finished cell)"]
    failed = [c for c in cells if c["status"] != "done"]
    if failed:
        parts += ["", "Failed cells (rerun the command to retry them):", ""]
        parts += [f"- {md_cell(c['cell'])}: {md_cell(c.get('error'))}" for c in failed]
    return "\n".join(parts) + "\n"


def render_plot(rows: list[dict[str, Any]], baseline: str) -> bytes | None:
    """PNG: one panel per (student, metric), a bar per strategy with its spread; None without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    cols = list(dict.fromkeys((r["student"], r["metric"]) for r in rows))
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols) + 1, 3.2), squeeze=False)
    for ax, (student, metric) in zip(axes[0], cols, strict=True):
        sel = [r for r in rows if (r["student"], r["metric"]) == (student, metric)]
        colors = ["#999999" if r["strategy"] == baseline else "#4c72b0" for r in sel]
        ax.bar([r["strategy"] for r in sel], [r["mean"] for r in sel], yerr=[r["spread"] or 0 for r in sel],
               color=colors)
        ax.set_title(f"{student}: {METRICS[metric][0]}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=35, labelsize=7)
    return png_bytes(fig, dpi=100)


def lineage(cfg, crowd: dict[str, Any], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: what every number in the table came from."""
    out = []
    for c in cells:
        entry = {k: c.get(k) for k in ("cell", "status", "strategy", "student", "seed", "selection_digest",
                                       "select", "train", "eval", "judge", "error", "seconds")}
        if c.get("train"):
            entry["train_config"] = storage.join(c["train"], "train_config.yaml")
        out.append(entry)
    return out


def write_results(cfg, crowd: dict[str, Any], cells: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """results.csv, results.md, results.png, experiment.json under cfg.out; returns experiment.json's dict."""
    rows = aggregate(cells, cfg.baseline)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["strategy", "student", "metric", "mean", "spread", "seeds", "delta",
                                             "best"])
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(storage.join(cfg.out, "results.csv"), buf.getvalue())
    storage.write_text(storage.join(cfg.out, "results.md"), render_markdown(cfg, rows, cells, seconds))
    png = render_plot(rows, cfg.baseline)
    if png is not None:
        storage.write_bytes(storage.join(cfg.out, "results.png"), png)
    result = {"out": cfg.out, "crowd": crowd, "k": cfg.k, "clusters": cfg.clusters, "seeds": cfg.seeds,
              "baseline": cfg.baseline, "results": rows, "cells": lineage(cfg, crowd, cells), "seconds": seconds}
    storage.write_text(storage.join(cfg.out, "experiment.json"), jsonout.dumps(scrub_config(result), indent=2))
    return result
