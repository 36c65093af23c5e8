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
    gen = summary.get("generation") or {}
    temperature = "FastChat's per-category temperatures" if gen.get("temperature") == "fastchat" \
        else f"temperature {gen.get('temperature')}"
    lines = [
        f"Benchmark: {summary['benchmark']}, turns: {summary['turns']}, judge: {summary['judge']['name']} "
        f"({summary['judge']['model']}), {how}. Answers: {temperature}, up to {gen.get('max_new_tokens')} "
        "new tokens.",
        "",
        f"**Mean score: {_fmt(summary['mean'])}** over {summary['scored']} judged turns of "
        f"{summary['questions']} questions ({summary['failed']} failed judge requests, "
        f"{summary.get('unparseable', 0)} unparseable judgments: neither is in the means; "
        f"{summary.get('answer_errors', 0)} answers failed to generate and were judged as \"ERROR\", as FastChat "
        "does).",
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
        lines += ["", "Failed, unparseable or unanswered turns:", ""]
        lines += [f"- question {f['question_id']} turn {f['turn']}: {f['error']}" for f in summary["failures"]]
    return lines


def _pairwise_lines(p: dict[str, Any]) -> list[str]:
    if p["mode"] == "arena-hard":
        how = (f"Arena-Hard-Auto's scoring: Bradley-Terry win rate over {p['battles']} battles (a strong verdict "
               f"counts {p['weight']} times), 95% interval from {p['bootstrap']} bootstraps over battles")
    else:
        how = (f"FastChat pair-v2: {p['wins']} wins, {p['ties']} ties, {p['losses']} losses (games that disagree "
               f"are a tie), 95% interval from {p['bootstrap']} bootstraps over questions")
    return ["", f"## Pairwise against {p['baseline']} ({p['mode']})", "",
            f"Win rate **{_fmt(p['win_rate'])}** ({_fmt(p['ci95'][0])}-{_fmt(p['ci95'][1])}) over {p['pairs']} "
            f"of {p['questions']} questions, each judged twice with the positions swapped; {how}. Left out: "
            f"{p['dropped']} questions with an unreadable or failed game ({p['failed_games']} failed games), "
            f"{len(p['no_baseline_answer'])} without a baseline answer. Answers that failed to generate (judged "
            f"as \"ERROR\"): {p['model_answer_errors']} of the model, {p['baseline_answer_errors']} of the baseline.",
            "", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in p["labels"].items()) + "."]


def render_report(summary: dict[str, Any]) -> str:
    """Markdown: MT-bench (headline, per category, per turn, failures), pairwise and proxy when present."""
    lines = [f"# Evaluation of {summary['model']}", ""]
    if "mean" in summary:
        lines += _mtbench_lines(summary)
    if "pairwise" in summary:
        lines += _pairwise_lines(summary["pairwise"])
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
