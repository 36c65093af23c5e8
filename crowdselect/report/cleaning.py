"""report.html's sections on what left the pool before the selection: decontamination and dedup.

Built from the files a select run wrote (run.json's `decontamination` and `dedup` records, contamination.jsonl,
duplicates.jsonl); each function returns the section's HTML body, or None when the run did not do that step.
User text is clipped and escaped as everywhere in the report (`crowdselect.core.text.show`, then HTML-escaped).
"""

from __future__ import annotations

import html
from typing import Any

from crowdselect.core.text import show

EXAMPLES = 5
CLIP = 300


def _t(value: Any, limit: int = CLIP) -> str:
    return html.escape(show("" if value is None else value, limit))


def _table(head: list[str], rows: list[list[str]]) -> str:
    """HTML table; cells are HTML already."""
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def contamination_section(run: dict[str, Any], flagged: list[dict[str, Any]]) -> str | None:
    """Matches by rule and eval set, then the first flagged rows with the eval text and the evidence."""
    d = run.get("decontamination")
    if not d:
        return None
    removed = d["removed"]
    cos = "off" if d.get("cosine") is None else f"cosine &ge; {d['cosine']}"
    intro = (f"<p>Pool rows matched against {', '.join(_t(s['set'], 200) for s in d['sets'])} "
             f"({sum(s['texts'] for s in d['sets'])} eval texts) and removed before scoring: "
             f"<b>{removed['instructions']}</b> instruction(s), {removed['rows']} input row(s). Rules: exact match "
             f"after normalisation, a shared {d['ngram']}-gram of words, embedding {cos}. Every one is in "
             f"contamination.jsonl with its evidence.</p>")
    by_set: dict[str, int] = {}
    for f in flagged:
        by_set[f["eval"]["set"]] = by_set.get(f["eval"]["set"], 0) + 1
    counts = _table(["rule", "rows (first rule that fired)"], [[r, str(n)] for r, n in removed["by_rule"].items()])
    if by_set:
        counts += _table(["eval set", "rows"], [[_t(s, 200), str(n)] for s, n in by_set.items()])
    rows = [[_t(f["id"], 100), _t(f["instruction"]),
             f"{_t(f['eval']['set'], 100)} q{_t(f['eval']['question_id'], 50)} turn {f['eval']['turn']}: "
             f"{_t(f['eval']['text'])}", _t(f["rule"]),
             _t(f["ngram"] or "—") + ("" if f.get("cosine") is None else f"<br>cosine {f['cosine']:.3f}")]
            for f in flagged[:EXAMPLES]]
    examples = (f"<h3>First {len(rows)} of {len(flagged)}</h3>"
                + _table(["id", "pool instruction", "eval question", "rule", "evidence"], rows)) if rows else ""
    return intro + counts + examples


def dedup_section(run: dict[str, Any], pairs: list[dict[str, Any]]) -> str | None:
    """Dropped rows per cluster, then the first pairs (kept vs dropped instruction, cosine)."""
    d = run.get("dedup")
    if not d:
        return None
    intro = (f"<p>Within each k-means cluster, of two instructions with cosine &ge; {d['cosine']} the one with the "
             f"lower score left the pool: <b>{d['dropped']}</b> dropped (duplicates.jsonl).</p>")
    per = _table(["cluster", "dropped"], [[k, str(v)] for k, v in d["per_cluster"].items()]) if d["per_cluster"] else ""
    rows = [[str(p["cluster"]), f"{p['cosine']:.3f}", f"{_t(p['kept_id'], 100)}: {_t(p.get('kept_instruction'))}",
             f"{_t(p['dropped_id'], 100)}: {_t(p.get('dropped_instruction'))}"] for p in pairs[:EXAMPLES]]
    examples = (f"<h3>First {len(rows)} of {len(pairs)}</h3>"
                + _table(["cluster", "cosine", "kept", "dropped"], rows)) if rows else ""
    return intro + per + examples
