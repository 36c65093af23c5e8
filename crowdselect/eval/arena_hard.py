"""Arena-Hard-Auto's pairwise judging and score (lmarena/arena-hard-auto), for the model against a baseline.
Pure: numpy and sklearn; no models, no Ray.

Judging, as gen_judgment.py and config/judge_config.yaml of v0.1 (the version that scores with Bradley-Terry):
- the judge prompt: SYSTEM_PROMPT (utils/judge_utils.py OG_ARENA_HARD_PROMPT) and USER_TEMPLATE (the config's
  prompt_template); five labels, [[A>>B]] [[A>B]] [[A=B]] [[B>A]] [[B>>A]];
- game 1 puts the baseline's answer as A and the model's as B, game 2 swaps them (gen_judgment.py, round 1
  and round 2);
- the label is read with LABEL_PATTERN (get_score): no label -> the judge is asked to go on (CONTINUE) until
  `attempts` replies in all (number_of_judgment_attempts: 2), the replies joined; different labels in one
  judgment -> unreadable, not asked again.
Scoring, as show_result.py:
- a question with an unreadable or failed game is dropped whole and counted (v2.0 load_judgments drops the
  row whose games hold a None score);
- each game is one battle, a strong label `weight` battles (--weight 3); the label map is v2.0's
  label_to_score (the reversed spellings A<B, B<<A, ... included);
- Bradley-Terry by logistic regression (v0.1 utils_math.compute_mle_elo: battles doubled, a tie one win each
  way, no intercept, no penalty) and the predicted win rate against the baseline (predict_win_rate);
- the 95% interval: percentiles 2.5 and 97.5 of the win rates of `bootstrap` fits on the battles resampled
  with replacement (get_bootstrap_result; --num-rounds 100).
With one model against the baseline, the Bradley-Terry win rate equals the share of battles won (a tie counts
half); when every battle goes one way the fit has no finite optimum (sklearn refuses a single class) and the
score is that limit, 1 or 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np

SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your "
    "job is to evaluate which assistant's answer is better.\n\nBegin your evaluation by generating your own "
    "answer to the prompt. You must provide your answers before judging any answers.\n\nWhen evaluating the "
    "assistants' answers, compare both assistants' answers with your answer. You must identify and correct any "
    "mistakes or inaccurate information.\n\nThen consider if the assistant's answers are helpful, relevant, and "
    "concise. Helpful means the answer correctly responds to the prompt or follows the instructions. Note when "
    "user prompt has any ambiguity or more than one interpretation, it is more helpful and appropriate to ask "
    "for clarifications or more information from the user than providing an answer based on assumptions. "
    "Relevant means all parts of the response closely connect or are appropriate to what is being asked. "
    "Concise means the response is clear and not verbose or excessive.\n\nThen consider the creativity and "
    "novelty of the assistant's answers when needed. Finally, identify any missing important information in the "
    "assistants' answers that would be beneficial to include when responding to the user prompt.\n\nAfter "
    "providing your explanation, you must output only one of the following choices as your final verdict with "
    "a label:\n\n1. Assistant A is significantly better: [[A>>B]]\n2. Assistant A is slightly better: "
    "[[A>B]]\n3. Tie, relatively the same: [[A=B]]\n4. Assistant B is slightly better: [[B>A]]\n5. Assistant B "
    "is significantly better: [[B>>A]]\n\nExample output: \"My final verdict is tie: [[A=B]]\".")
USER_TEMPLATE = ("<|User Prompt|>\n{question_1}\n\n<|The Start of Assistant A's Answer|>\n{answer_1}\n"
                 "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{answer_2}\n"
                 "<|The End of Assistant B's Answer|>")
CONTINUE = "continue your judgment and finish by outputting a final verdict label"
LABEL_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")
# label -> (A's result, strong); v2.0 show_result.py label_to_score
LABELS = {"A>B": (1.0, False), "A>>B": (1.0, True), "A=B": (0.5, False), "A<<B": (0.0, True),
          "A<B": (0.0, False), "B>A": (0.0, False), "B>>A": (0.0, True), "B=A": (0.5, False),
          "B<<A": (1.0, True), "B<A": (1.0, False)}
MODEL_IS_A = {1: False, 2: True}  # game -> whether the evaluated model's answer is A


def user_prompt(question: str, answer_a: str, answer_b: str) -> str:
    """The user message of one game (Arena-Hard-Auto's prompt_template)."""
    return USER_TEMPLATE.format(question_1=question, answer_1=answer_a, answer_2=answer_b)


def read_label(judgment: str | None) -> tuple[str | None, bool]:
    """(the verdict label, whether to ask the judge to go on): v0.1 gen_judgment.py get_score.

    >>> read_label("... My final verdict is: [[B>A]]"), read_label("no label yet")
    (('B>A', False), (None, True))
    >>> read_label("[[A>B]] at first, then [[B>>A]]")
    (None, False)
    """
    found = {m.strip("\n") for m in LABEL_PATTERN.findall(judgment or "") if m}
    if not found:
        return None, True
    return (found.pop(), False) if len(found) == 1 else (None, False)


def model_result(game: int, label: str | None) -> tuple[float, bool] | None:
    """(the model's result in one game: 1 win, 0.5 tie, 0 loss; whether the label is strong), or None for an
    unreadable label.

    >>> model_result(1, "A>>B"), model_result(2, "A>>B"), model_result(1, "B>A"), model_result(2, "AB")
    ((0.0, True), (1.0, True), (1.0, False), None)
    """
    if label not in LABELS:
        return None
    result, strong = LABELS[label]
    return (result if MODEL_IS_A[game] else 1.0 - result), strong


def battles(games: list[tuple[Any, int, str | None]], weight: int = 3) -> tuple[np.ndarray, dict[str, int]]:
    """The model's battle outcomes from (question_id, game, label) rows, and the counts behind them.

    Returns (outcomes: (n_battles,) of 1 / 0.5 / 0, {questions, pairs, dropped}): a question is used when both
    its games have a readable label; a strong label gives `weight` battles.

    >>> out, n = battles([(1, 1, "A>B"), (1, 2, "A>>B"), (2, 1, "A=B"), (2, 2, None)])
    >>> out.tolist(), n
    ([0.0, 1.0, 1.0, 1.0], {'questions': 2, 'pairs': 1, 'dropped': 1})
    """
    by_q: dict[Any, dict[int, str | None]] = {}
    for qid, game, label in games:
        by_q.setdefault(qid, {})[game] = label
    outcomes: list[float] = []
    used = 0
    for pair in by_q.values():
        results = [model_result(g, pair.get(g)) for g in (1, 2)]
        if any(r is None for r in results):
            continue
        used += 1
        for result, strong in results:
            outcomes += [result] * (weight if strong else 1)
    return np.array(outcomes, dtype=float), {"questions": len(by_q), "pairs": used, "dropped": len(by_q) - used}


def bt_win_rate(outcomes: np.ndarray) -> float:
    """The model's Bradley-Terry win rate against the baseline from its battle outcomes (n,) (1 / 0.5 / 0):
    compute_mle_elo's logistic regression (baseline as model_a, battles doubled, a tie one win each way) and
    predict_win_rate. No battle: NaN; every battle one way: the limit, 1.0 or 0.0.

    >>> round(bt_win_rate(np.array([1.0, 1.0, 0.5, 0.0])), 4), bt_win_rate(np.array([1.0, 1.0]))
    (0.625, 1.0)
    """
    from sklearn.linear_model import LogisticRegression

    if len(outcomes) == 0:
        return float("nan")
    n = len(outcomes)
    x = np.zeros((2 * n, 2))
    x[:, 0], x[:, 1] = math.log(10), -math.log(10)  # column 0: the baseline (model_a), 1: the model (model_b)
    baseline_won = np.concatenate([outcomes == 0.0, outcomes == 0.0])
    y = baseline_won.astype(float)
    y[:n][outcomes == 0.5] = 1.0  # a tie: model_a wins the first copy, model_b the second
    if y.min() == y.max():
        return 0.0 if y[0] == 1.0 else 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8)
    lr.fit(x, y)
    elo = 400 * lr.coef_[0] + 1000  # SCALE 400, INIT_RATING 1000; only the difference matters below
    return float(1 / (1 + 10 ** ((elo[0] - elo[1]) / 400)))


def score(games: list[tuple[Any, int, str | None]], weight: int = 3, n_boot: int = 100,
          seed: int = 0) -> dict[str, Any]:
    """Arena-Hard-Auto's score of the model against the baseline: win rate, 95% interval, counts."""
    outcomes, counts = battles(games, weight)
    rng = np.random.default_rng(seed)
    boots = [bt_win_rate(outcomes[rng.integers(0, len(outcomes), size=len(outcomes))]) for _ in range(n_boot)] \
        if len(outcomes) else []
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (float("nan"), float("nan"))
    rate = bt_win_rate(outcomes)
    labels = Counter(label or "unreadable" for _, _, label in games)
    return {"win_rate": None if math.isnan(rate) else round(rate, 4),
            "ci95": [None if math.isnan(lo) else round(float(lo), 4), None if math.isnan(hi) else round(float(hi), 4)],
            "battles": len(outcomes), **counts, "games": len(games), "labels": dict(sorted(labels.items()))}
