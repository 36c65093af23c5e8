"""report.html: one self-contained page per select run, pipeline run or experiment (images inline as base64
PNG, no script, no network), built only from the files the run wrote:

    select run   run.json, scores.parquet/, selected.jsonl  -> metric distributions pool vs selected,
                 metric correlations, mean reward per generator and per-family size curves, a 2-D projection
                 of the clusters with the selected rows marked, per-cluster quotas, decontamination and dedup
                 (contamination.jsonl, duplicates.jsonl), selected examples in full
    pipeline run run.json -> its select/ folder as above, + train/train_log.jsonl loss curve
    experiment   experiment.json, results.md, cells/*/{train,eval} -> the table, loss curves, eval scores by
                 category, and the first strategy's selection as above

`write_report(folder)` is the one call the jobs make; a report that cannot be drawn is logged, never fatal.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from typing import Any

import numpy as np

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.core.text import DISPLAY_LIMIT, show
from crowdselect.report import cleaning, figures

log = logging.getLogger(__name__)
REPORT = "report.html"
EXAMPLES = 3
CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse;margin:1em 0}"
       "td,th{border:1px solid #ccc;padding:.3em .6em;font-size:.9em;text-align:left}"
       "pre{white-space:pre-wrap;background:#f6f6f6;padding:.6em;font-size:.85em}.note{color:#8a4b00}")


def _read_json(uri: str) -> Any:
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


def _read_jsonl(uri: str) -> list[dict[str, Any]]:
    if not storage.exists(uri):
        return []
    return [json.loads(x) for x in storage.read_text(uri).splitlines() if x.strip()]


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _text(value: Any, limit: int = DISPLAY_LIMIT) -> str:
    """User text for the page: clipped, control characters as escapes (`core.text.show`), HTML-escaped."""
    return html.escape(show(value, limit))


def _number(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def _read_scores(select_dir: str):
    """The columns the figures draw (selected, metrics, cluster, pc1/pc2) of scores.parquet, or None."""
    import pyarrow.dataset as pds

    uri = storage.join(select_dir, "scores.parquet")
    if not storage.exists(uri):
        return None
    fs, path = storage.filesystem(uri)
    data = pds.dataset(path, filesystem=fs, format="parquet")
    wanted = [C.SELECTED, *C.METRICS, C.CLUSTER, *C.PCA]
    return data.to_table(columns=[c for c in wanted if c in data.schema.names])


def _floats(table, column: str) -> np.ndarray:
    """A numeric column as float64 numpy, nulls as NaN."""
    import pyarrow.compute as pc

    return pc.fill_null(table.column(column).cast("float64"), float("nan")).to_numpy(zero_copy_only=False)


def mean_rewards(run: dict[str, Any]) -> dict[str, float]:
    """Mean reward per generator over the crowd the selection read (failed rewards left out): run.json's
    `generator_rewards`, which the select run gathered in its summary pass."""
    return {g: m["mean"] for g, m in (run.get("generator_rewards") or {}).items() if m.get("n")}


def selection_sections(select_dir: str) -> list[str]:
    """The figures and examples of one selection folder."""
    run = _read_json(storage.join(select_dir, "run.json")) or {}
    table = _read_scores(select_dir)
    out = []
    if table is not None:
        selected = table.column(C.SELECTED).to_numpy(zero_copy_only=False).astype(bool)
        metrics = {m: _floats(table, m) for m in C.METRICS if m in table.column_names}
        if metrics:
            out.append(_section("Metrics: pool vs selected", _img(figures.metric_histograms(metrics, selected),
                                                                  "metric distributions")))
            out.append(_section("Metric correlations", _img(figures.correlation_heatmap(metrics), "correlations")))
        means = mean_rewards(run)
        gens = (run.get("config") or {}).get("generators") or [{"name": m} for m in means]
        if means:
            out.append(_section("Reward by generator, family and size",
                                _img(figures.reward_by_generator(gens, means), "reward matrix")))
        if C.CLUSTER in table.column_names:
            clusters = table.column(C.CLUSTER).to_numpy(zero_copy_only=False).astype(int)
            if all(c in table.column_names for c in C.PCA):
                xy = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in C.PCA])
                out.append(_section("Clusters (the embeddings on their two principal axes)",
                                    _img(figures.cluster_projection(xy, clusters, selected), "clusters")))
            out.append(_section("Per-cluster quotas", _img(figures.cluster_quotas(clusters, selected), "quotas")))
    cleaned = {"Decontamination": cleaning.contamination_section(run, _read_jsonl(storage.join(select_dir,
                                                                                                "contamination.jsonl"))),
               "Semantic dedup": cleaning.dedup_section(run, _read_jsonl(storage.join(select_dir, "duplicates.jsonl")))}
    out += [_section(title, body) for title, body in cleaned.items() if body]
    examples = _read_jsonl(storage.join(select_dir, "selected.jsonl"))[:EXAMPLES]
    if examples:
        body = "".join(f"<h3>{_text(e.get(C.ID), 200)} (cluster {e.get(C.CLUSTER)}, score "
                       f"{_number(e.get(C.SCORE))}, answer by {_text(e.get(C.MODEL), 200)})</h3>"
                       f"<pre>{_text(e.get(C.INSTRUCTION))}</pre><pre>{_text(e.get(C.RESPONSE))}</pre>"
                       for e in examples)
        out.append(_section(f"Selected examples (first {len(examples)})", body))
    if run.get("decisions"):
        out.append(_section("Decisions", "<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in run["decisions"])
                            + "</ul>"))
    return out


def _loss_section(curves: dict[str, str]) -> list[str]:
    """name -> train_log.jsonl uri; a section when any has steps."""
    points = {name: [(r["step"], r["loss"]) for r in _read_jsonl(uri)] for name, uri in curves.items()}
    points = {k: v for k, v in points.items() if v}
    return [_section("Training loss", _img(figures.loss_curves(points), "loss curves"))] if points else []


def _md_table(md: str) -> str:
    """The first Markdown table of `md` (its first run of `|` lines) as an HTML table (bold kept; `\\|` is a
    pipe inside a cell)."""
    block = next(iter(re.findall(r"(?:^\|.*(?:\n|$))+", md, re.M)), "")
    rows = [line for line in block.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    cells = [[c.strip().replace(r"\|", "|") for c in re.split(r"(?<!\\)\|", r.strip()[1:-1])] for r in rows]

    def fmt(c: str) -> str:
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(c))

    if not cells:
        return ""
    head = "".join(f"<th>{fmt(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def experiment_sections(folder: str) -> list[str]:
    exp = _read_json(storage.join(folder, "experiment.json")) or {}
    md = storage.read_text(storage.join(folder, "results.md")) if storage.exists(storage.join(folder, "results.md")) \
        else ""
    notes = "".join(f'<p class="note">{html.escape(x[2:])}</p>' for x in md.splitlines() if x.startswith("> "))
    out = [_section("Results", notes + _md_table(md))]
    if "## Completeness" in md:
        out.append(_section("Completeness", _md_table(md.split("## Completeness", 1)[1])))
    cells = [c for c in exp.get("cells", []) if c.get("status") == "done"]
    out += _loss_section({c["cell"]: storage.join(c["train"], "train_log.jsonl") for c in cells if c.get("train")})
    by_cell, label = {}, "MT-bench score by category"
    for c in cells:
        s = _read_json(storage.join(c["eval"], "summary.json")) or {}
        if s.get("by_category"):
            by_cell[c["cell"]] = s["by_category"]
        elif s.get("proxy"):
            by_cell[c["cell"]] = {f"PROXY {k}": v for k, v in s["proxy"]["mean_reward"].items()}
            label = "PROXY mean reward (not a judge)"
    if by_cell:
        out.append(_section("Evaluation by category", _img(figures.scores_by_category(by_cell, label), "eval")))
    first = next((c["select"] for c in exp.get("cells", []) if c.get("select")), None)
    if first and storage.exists(storage.join(first, "run.json")):
        out.append(f"<h2>Selection of {html.escape(first.rsplit('/', 1)[-1])}</h2>")
        out += selection_sections(first)
    return out


def build_report(folder: str) -> str:
    """The HTML text for a select run, pipeline run or experiment folder."""
    if storage.exists(storage.join(folder, "experiment.json")):
        kind, sections = "Experiment", experiment_sections(folder)
    else:
        run = _read_json(storage.join(folder, "run.json")) or {}
        if isinstance(run.get("select"), dict):  # a pipeline run
            kind, sections = "Pipeline run", selection_sections(run["select"]["dir"])
            if run.get("train"):
                sections += _loss_section({"student": storage.join(run["train"]["out"], "train_log.jsonl")})
        else:
            kind, sections = "Selection", selection_sections(folder)
    title = f"crowdselect — {kind}: {html.escape(folder)}"
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head><body><h1>{title}</h1>\n" + "".join(sections) + "</body></html>\n")


def write_report(folder: str) -> str | None:
    """Write FOLDER/report.html; returns its URI, or None (with a warning) when it could not be drawn."""
    try:
        uri = storage.join(folder, REPORT)
        storage.write_text(uri, build_report(folder))
        return uri
    except Exception as e:  # noqa: BLE001 - the run is done; a missing figure must not fail it
        log.warning("report.html not written for %s: %s: %s", folder, type(e).__name__, e)
        return None
