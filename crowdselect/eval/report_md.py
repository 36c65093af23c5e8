"""The human-readable side of an evaluation: report.md and a bar chart of the mean score per category.

Both are rendered from summary.json's dict alone, so a report can be redrawn from a finished run.
"""

from __future__ import annotations

from typing import Any

from crowdselect.report.figures import png_bytes, pyplot


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mtbench_lines(summary: dict[str, Any]) -> list[str]:
    rating = summary["judge"].get("rating", "judgment")
    how = "FastChat single-answer grading ([[rating]] read from the judgment)" if rating == "judgment" \
        else "probability-weighted 1-10 rating"
    lines = [
        f"Benchmark: {summary['benchmark']}, turns: {summary['turns']}, judge: {summary['judge']['name']} "
        f"({summary['judge']['model']}), {how}.",
        "",
        f"**Mean score: {_fmt(summary['mean'])}** over {summary['scored']} judged turns of "
        f"{summary['questions']} questions ({summary['failed']} failed, "
        f"{summary.get('unparseable', 0)} unparseable judgments; neither is in the means).",
        "",
        "| category | mean |",
        "|---|---|",
        *[f"| {c} | {_fmt(v)} |" for c, v in summary["by_category"].items()],
        "",
        "| turn | mean |",
        "|---|---|",
        *[f"| {t} | {_fmt(v)} |" for t, v in summary["by_turn"].items()],
    ]
    if summary["failures"]:
        lines += ["", "Failed or unparseable turns (not in the means):", ""]
        lines += [f"- question {f['question_id']} turn {f['turn']}: {f['error']}" for f in summary["failures"]]
    return lines


def render_report(summary: dict[str, Any]) -> str:
    """Markdown: MT-bench (headline, per category, per turn, failures), pairwise and proxy when present."""
    lines = [f"# Evaluation of {summary['model']}", ""]
    if "mean" in summary:
        lines += _mtbench_lines(summary)
    if "pairwise" in summary:
        p = summary["pairwise"]
        lines += ["", f"## Pairwise against {p['baseline']}", "",
                  f"Win rate **{_fmt(p['win_rate'])}** (95% bootstrap interval {_fmt(p['ci95'][0])}-"
                  f"{_fmt(p['ci95'][1])}) over {p['questions']} questions, each judged twice with the "
                  f"positions swapped: {p['wins']} wins, {p['ties']} ties, {p['losses']} losses, "
                  f"{p['unreadable']} unreadable verdicts."]
    if "proxy" in summary:
        x = summary["proxy"]
        lines += ["", "## PROXY (judge-free)", "", f"{x['label']}: {x['answered']}/{x['questions']} held-out "
                  f"instructions answered; mean reward " +
                  ", ".join(f"{k} {_fmt(v)}" for k, v in x["mean_reward"].items()) + "."]
    return "\n".join(lines) + "\n"


def render_plot(summary: dict[str, Any]) -> bytes | None:
    """PNG bytes of mean score per category, or None when matplotlib is not installed (`crowdselect[plot]`)."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    cats = [c for c, v in summary.get("by_category", {}).items() if v is not None]
    if not cats:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(cats) + 2), 3.2))
    ax.bar(cats, [summary["by_category"][c] for c in cats], color="#4c72b0")
    ax.set_ylim(0, 10)
    ax.set_ylabel("mean judge score (1-10)")
    ax.set_title(f"{summary['model']} — mean {_fmt(summary['mean'])}", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return png_bytes(fig, dpi=100)
