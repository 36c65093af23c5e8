"""The results of an experiment, laid out like the paper's Table 2: rows strategies, columns students x
(MT-bench mean, turn 1, turn 2, pairwise win rate, and the judge-free PROXY when that is what was run);
mean ± spread (sample standard deviation) over the seeds that count, with their number; the delta against the
baseline strategy (random) in parentheses. `cell_values`, `aggregate` and `render_table` are pure.

Completeness is part of every number: each cell's evaluation counts, per metric, the turns (questions, pairs)
expected, answered, judged, unparseable and failed (eval/summary.py); a cell whose usable share (answered and
judged / expected) is below `min_completeness` is marked and left out of the means and the bold. The best
strategy of a column is bold only when its lead over the next exceeds both their spreads (so never with one
seed: no spread, no claim).

Writes results.csv (one row per strategy x student x metric, the counts summed over its cells), cells.csv
(one row per cell x metric: the value, the counts, whether it counts), results.md, results.png,
experiment.json (the lineage of every number: crowd, reward models, strategy, step digests, student,
training config and schedule, judge, and each cell's folders).
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

RESULT_FILES = ("results.csv", "cells.csv", "results.md", "results.png", "experiment.json")  # write_results's
COUNTS = ("expected", "answered", "judged", "unparseable", "failed")


def _proxy(s: dict[str, Any]) -> Any:
    return next(iter(((s.get("proxy") or {}).get("mean_reward") or {}).values()), None)


METRICS = {  # column -> (label, its value in an eval summary.json, its completeness counts there)
    "mtbench": ("MT-bench", lambda s: s.get("mean"), lambda s: (s.get("completeness") or {}).get("mtbench")),
    "turn1": ("turn 1", lambda s: (s.get("by_turn") or {}).get("1"),
              lambda s: (s.get("completeness") or {}).get("turn1")),
    "turn2": ("turn 2", lambda s: (s.get("by_turn") or {}).get("2"),
              lambda s: (s.get("completeness") or {}).get("turn2")),
    "winrate": ("win rate", lambda s: (s.get("pairwise") or {}).get("win_rate"),
                lambda s: (s.get("pairwise") or {}).get("completeness")),
    "proxy": ("PROXY reward", _proxy, lambda s: (s.get("proxy") or {}).get("completeness")),
}


def cell_values(cells: list[dict[str, Any]], min_completeness: float = 0.95) -> list[dict[str, Any]]:
    """One row per done cell x metric it has: {cell, strategy, student, seed, metric, value, counts...,
    completeness, included}. `included`: a value and usable / expected >= min_completeness.

    >>> cell = {"status": "done", "cell": "c", "strategy": {"name": "r"}, "student": {"name": "s"}, "seed": 0,
    ...         "summary": {"mean": 6.0, "completeness": {"mtbench": {"expected": 10, "answered": 10,
    ...                     "judged": 9, "unparseable": 1, "failed": 0, "usable": 9}}}}
    >>> [(v["metric"], v["completeness"], v["included"]) for v in cell_values([cell], 0.95)]
    [('mtbench', 0.9, False)]
    """
    out = []
    for c in cells:
        if c.get("status") != "done":
            continue
        for metric, (_, read, counts_of) in METRICS.items():
            value, counts = read(c["summary"]), counts_of(c["summary"])
            if value is None and counts is None:
                continue
            share = round(counts["usable"] / counts["expected"], 4) if counts and counts["expected"] else None
            out.append({"cell": c.get("cell"), "strategy": c["strategy"]["name"], "student": c["student"]["name"],
                        "seed": c.get("seed"), "metric": metric, "value": value,
                        **{k: (counts or {}).get(k) for k in COUNTS}, "completeness": share,
                        "included": value is not None and (share is None or share >= min_completeness)})
    return out


def aggregate(cells: list[dict[str, Any]], baseline: str, min_completeness: float = 0.95) -> list[dict[str, Any]]:
    """Rows {strategy, student, metric, mean, spread, seeds, cells, incomplete, delta, best, counts...}.

    >>> cells = [{"status": "done", "strategy": {"name": n}, "student": {"name": "s"}, "summary": {"mean": m}}
    ...          for n, m in (("random", 5.0), ("crowdselect", 6.0), ("crowdselect", 7.0))]
    >>> [(r["strategy"], r["mean"], r["spread"], r["seeds"], r["delta"], r["best"]) for r in aggregate(cells, "random")]
    [('random', 5.0, None, 1, 0.0, False), ('crowdselect', 6.5, 0.7071, 2, 1.5, False)]
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for v in cell_values(cells, min_completeness):
        groups.setdefault((v["strategy"], v["student"], v["metric"]), []).append(v)
    order = list(dict.fromkeys(k[0] for k in groups))
    rows = []
    for (strategy, student, metric), vs in sorted(groups.items(), key=lambda kv: order.index(kv[0][0])):
        used = [float(v["value"]) for v in vs if v["included"]]
        rows.append({"strategy": strategy, "student": student, "metric": metric,
                     "mean": round(statistics.fmean(used), 4) if used else None,
                     "spread": round(statistics.stdev(used), 4) if len(used) > 1 else None,
                     "seeds": len(used), "cells": len(vs), "incomplete": len(vs) - len(used),
                     **{k: sum(v[k] or 0 for v in vs) for k in COUNTS}})
    at = {(r["strategy"], r["student"], r["metric"]): r for r in rows}
    for r in rows:
        base = at.get((baseline, r["student"], r["metric"]))
        r["delta"] = round(r["mean"] - base["mean"], 4) if r["mean"] is not None and base and \
            base["mean"] is not None else None
        col = sorted((x for x in rows if (x["student"], x["metric"]) == (r["student"], r["metric"])
                      and x["mean"] is not None), key=lambda x: -x["mean"])
        r["best"] = len(col) > 1 and col[0] is r and clear_lead(col[0], col[1])
    return rows


def clear_lead(best: dict[str, Any], runner: dict[str, Any]) -> bool:
    """The best mean leads the next by more than either spread (both need two or more seeds).

    >>> clear_lead({"mean": 6.5, "spread": 0.3}, {"mean": 5.0, "spread": 0.5})
    True
    >>> clear_lead({"mean": 6.5, "spread": 0.3}, {"mean": 6.0, "spread": 0.6}), clear_lead({"mean": 9, "spread": None}, {"mean": 1, "spread": 0.1})
    (False, False)
    """
    if best["spread"] is None or runner["spread"] is None:
        return False
    return best["mean"] - runner["mean"] > max(best["spread"], runner["spread"])


def md_cell(text: Any) -> str:
    """User text (a strategy or student name) as one Markdown table cell or list line: `|` escaped, line
    breaks as one space, so that no name can end a row or add a column.

    >>> md_cell("a|b\\nc")
    'a\\\\|b c'
    """
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).replace("|", r"\|")


def _cell_text(r: dict[str, Any] | None, baseline: bool) -> str:
    if r is None:
        return "—"
    seeds = f"n={r['seeds']}" + (f" of {r['cells']}" if r["incomplete"] else "")
    if r["mean"] is None:
        return f"— ({seeds} complete)"
    text = f"{r['mean']:.3f}" + (f" ± {r['spread']:.3f}" if r["spread"] is not None else "")
    text = f"**{text}**" if r["best"] else text
    text += f" ({seeds})"
    if not baseline and r["delta"] is not None:
        text += f" ({r['delta']:+.3f})"
    return text


def render_table(rows: list[dict[str, Any]], baseline: str) -> str:
    """Markdown table: strategies x (student, metric); `mean ± spread (n=seeds) (Δ vs baseline)`, a clear
    best in bold; `n=2 of 3`: one cell of three left out as incomplete."""
    cols = list(dict.fromkeys((r["student"], r["metric"]) for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    at = {(r["strategy"], r["student"], r["metric"]): r for r in rows}
    head = "| strategy | " + " | ".join(f"{md_cell(s)}: {METRICS[m][0]}" for s, m in cols) + " |"
    lines = [head, "|---|" + "---|" * len(cols)]
    for st in strategies:
        cells = [_cell_text(at.get((st, s, m)), st == baseline) for s, m in cols]
        lines.append(f"| {md_cell(st)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_completeness(values: list[dict[str, Any]], min_completeness: float) -> str:
    """Markdown: per cell and evaluation (MT-bench turns, pairwise questions, PROXY instructions) the counts
    behind its number, and whether it counts."""
    lines = ["| cell | evaluation | expected | answered | judged | unparseable | failed | complete | counted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v in values:
        if v["metric"] in ("turn1", "turn2"):
            continue  # parts of the MT-bench row
        share = "—" if v["completeness"] is None else f"{v['completeness']:.0%}"
        mark = "yes" if v["included"] else f"**no** (< {min_completeness:.0%})"
        lines.append(f"| {md_cell(v['cell'])} | {METRICS[v['metric']][0]} | "
                     + " | ".join("—" if v[k] is None else str(v[k]) for k in COUNTS) + f" | {share} | {mark} |")
    return "\n".join(lines)


def schedule_lines(cells: list[dict[str, Any]]) -> list[str]:
    """What share of each student's optimizer steps is warmup (the paper's 150 of 187 is most of the run)."""
    seen = {}
    for c in cells:
        s = c.get("schedule") or {}
        if c.get("status") == "done" and s.get("total_steps"):
            seen[(c["student"]["name"], s.get("warmup_steps"), s["total_steps"])] = None
    return [f"- {md_cell(student)}: {warmup} of {total} optimizer steps are learning-rate warmup "
            f"({(warmup or 0) / total:.0%})" for student, warmup, total in seen]


def render_markdown(cfg, rows: list[dict[str, Any]], cells: list[dict[str, Any]], seconds: float) -> str:
    done = [c for c in cells if c["status"] == "done"]
    proxy_only = rows and all(r["metric"] == "proxy" for r in rows)
    threshold = getattr(cfg, "min_completeness", 0.95)
    parts = ["# Experiment: strategies compared by the students they train", ""]
    if cfg.note:  # every line of a note quoted: a line of its own could start a table row
        parts += [f"> {line}" for line in cfg.note.strip().splitlines()] + [""]
    if proxy_only:
        parts += ["> Scores are a PROXY (the run's reward model scoring answers to held-out instructions), "
                  "not MT-bench.", ""]
    parts += [f"k = {cfg.k}, clusters = {cfg.clusters}, seeds = {cfg.seeds}; {len(done)}/{len(cells)} cells done "
              f"in {seconds:.0f} s. Mean ± standard deviation over the seeds that count (n); a cell counts when "
              f"at least {threshold:.0%} of its evaluation was answered and judged (`n=1 of 2`: one left out). "
              "Bold: the best, only when its lead over the next exceeds both their standard deviations. "
              f"(±x) is the difference from `{cfg.baseline}`.", "", render_table(rows, cfg.baseline) if rows else
              "(no finished cell)"]
    values = cell_values(cells, threshold)
    if values:
        parts += ["", "## Completeness", "", render_completeness(values, threshold)]
    schedule = schedule_lines(cells)
    if schedule:
        parts += ["", "## Training schedule", ""] + schedule
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
    rows = [r for r in rows if r["mean"] is not None]
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
        entry = {k: c.get(k) for k in ("cell", "status", "strategy", "student", "seed", "selection_digest", "steps",
                                       "schedule", "select", "train", "eval", "judge", "error", "seconds")}
        if c.get("train"):
            entry["train_config"] = storage.join(c["train"], "train_config.yaml")
        out.append(entry)
    return out


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_results(cfg, crowd: dict[str, Any], cells: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """results.csv, cells.csv, results.md, results.png, experiment.json under cfg.out; returns experiment.json's
    dict."""
    threshold = getattr(cfg, "min_completeness", 0.95)
    rows, values = aggregate(cells, cfg.baseline, threshold), cell_values(cells, threshold)
    storage.write_text(storage.join(cfg.out, "results.csv"), _csv(rows, [
        "strategy", "student", "metric", "mean", "spread", "seeds", "cells", "incomplete", "delta", "best",
        *COUNTS]))
    storage.write_text(storage.join(cfg.out, "cells.csv"), _csv(values, [
        "cell", "strategy", "student", "seed", "metric", "value", *COUNTS, "completeness", "included"]))
    storage.write_text(storage.join(cfg.out, "results.md"), render_markdown(cfg, rows, cells, seconds))
    png = render_plot(rows, cfg.baseline)
    if png is not None:
        storage.write_bytes(storage.join(cfg.out, "results.png"), png)
    result = {"out": cfg.out, "crowd": crowd, "k": cfg.k, "clusters": cfg.clusters, "seeds": cfg.seeds,
              "baseline": cfg.baseline, "min_completeness": threshold, "results": rows,
              "incomplete_cells": sorted({v["cell"] for v in values if v["value"] is not None and not v["included"]}),
              "cells": lineage(cfg, crowd, cells), "seconds": seconds}
    storage.write_text(storage.join(cfg.out, "experiment.json"), jsonout.dumps(scrub_config(result), indent=2))
    return result
