"""Reading a judge's written judgment: the 1-10 rating (FastChat single-answer grading) and the A/B verdict
(FastChat's pair-v2 prompts). Pure text functions; no models.

The patterns are FastChat's (fastchat/llm_judge/common.py): `[[N]]` first, then `[N]`, then `Rating: N`.
A judgment none of them matches is *unparseable*: the caller counts and reports it and leaves it out of
the means — FastChat's -1 must never be averaged in as a score.
"""

from __future__ import annotations

import re

LOW, HIGH = 1.0, 10.0
_RATING_PATTERNS = (
    re.compile(r"\[\[(\d+\.?\d*)\]\]"),  # FastChat one_score_pattern
    re.compile(r"\[(\d+\.?\d*)\]"),  # one_score_pattern_backup
    re.compile(r"Rating:\s*(\d+\.?\d*)"),  # one_score_pattern_backup_two
)
_VERDICTS = {"[[A]]": "A", "[[B]]": "B", "[[C]]": "tie"}


def parse_rating(judgment: str | None) -> float | None:
    """The rating in a judgment, or None when it has none in [1, 10].

    >>> [parse_rating(t) for t in ("... Rating: [[8]]", "[[8.5]]", "Rating: 8", "I give it [8].")]
    [8.0, 8.5, 8.0, 8.0]
    >>> parse_rating("The answer is good.") is None and parse_rating("[[11]]") is None
    True
    """
    if not judgment:
        return None
    for pattern in _RATING_PATTERNS:
        match = pattern.search(judgment)
        if match:
            value = float(match.group(1))
            return value if LOW <= value <= HIGH else None
    return None


def parse_verdict(judgment: str | None) -> str | None:
    """"A", "B" or "tie" from a pair-v2 judgment ([[A]], [[B]], [[C]]); None when it names none or several.

    >>> [parse_verdict(t) for t in ("so [[A]]", "[[B]]", "[[C]]", "A is better", "[[A]] or [[B]]")]
    ['A', 'B', 'tie', None, None]
    """
    if not judgment:
        return None
    found = {v for tag, v in _VERDICTS.items() if tag in judgment}
    return found.pop() if len(found) == 1 else None
