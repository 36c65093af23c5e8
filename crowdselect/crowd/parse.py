"""Turn one input row (a JSON object or a Parquet row as a dict) into a canonical crowd row, or a reason.

Pure Python, no Ray. A canonical row is a dict with the columns of crowdselect.core.columns: id, instruction,
models, responses, rewards (aligned lists), source ("FILE:LINE"). A rejected row is the same dict with
`error` set to a one-line reason. Reasons are phrased for the `FILE:LINE: reason` report.

Rules (documented in the README):
- id: a non-empty string (integers are accepted and turned into strings);
- instruction: a non-empty string; blank text (`crowdselect.core.blank.is_blank`: only whitespace and
  invisible characters such as ZERO WIDTH SPACE) is empty, for ids, instructions and responses alike;
- every answer names a generator listed in the crowd config (else "unknown model"), at most once per row;
- a missing answer is left out of the metrics and counted by kind (MISSING): a null response (the generator
  did not answer), an empty or whitespace-only response, a null or NaN reward. A missing key is still an
  error ("missing field 'responses[1].reward'"): only an explicit null means "no answer";
- reward: a number; a string, list or bool is "non-numeric reward"; Infinity, -Infinity or a number too big
  for a double (1e400) is "non-finite reward", and a finite one beyond +-MAX_REWARD (1e50) is "reward out of
  range": a reward model does not give those, so the row is suspect (and the metrics of such numbers, a
  variance and its moments, would overflow a double);
- at least 2 answers with a reward, else "fewer than 2 answers".
"""

from __future__ import annotations

import math
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.blank import is_blank
from crowdselect.crowd.config import WideLayout

# kinds of missing answer, each counted per accepted row in a column of this name
NULL_RESPONSE = "missing_null_response"
EMPTY_RESPONSE = "missing_empty_response"
NULL_REWARD = "missing_null_reward"
MISSING = (NULL_RESPONSE, EMPTY_RESPONSE, NULL_REWARD)
# the largest |reward| accepted: the pool's sums of squared variances (~ (2 * 1e50) ** 4 per row) stay finite
MAX_REWARD = 1e50


class CrowdRowError(ValueError):
    """Why a row cannot be used; the message is the reason printed after FILE:LINE."""


def _id(obj: dict, key: str) -> str:
    if key not in obj or obj[key] is None:
        raise CrowdRowError(f"missing field '{key}'")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and is_blank(v)):
        raise CrowdRowError(f"field '{key}' must be a non-empty string, got {v!r:.40}")
    return str(v)


def _text(obj: dict, key: str, what: str | None = None) -> str:
    if key not in obj or obj[key] is None:
        raise CrowdRowError(f"missing field '{what or key}'")
    v = obj[key]
    if not isinstance(v, str):
        raise CrowdRowError(f"field '{what or key}' must be a string, got {type(v).__name__}")
    return v


def _reward(v: Any, model: str) -> float | None:
    """A reward value -> float, or None for null/NaN (a missing answer). Raises on non-numbers and inf."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CrowdRowError(f"non-numeric reward {v!r:.40} for model '{model}'")
    v = float(v)
    if math.isinf(v):
        raise CrowdRowError(f"non-finite reward {v} for model '{model}' (Infinity or a number beyond a double)")
    if abs(v) > MAX_REWARD:
        raise CrowdRowError(f"reward out of range {v:.4g} for model '{model}' (beyond +-{MAX_REWARD:g})")
    return None if math.isnan(v) else v


def _response(v: Any, what: str) -> str | None:
    """A response value -> str, or None for null (a missing answer). Raises on non-strings."""
    if v is not None and not isinstance(v, str):
        raise CrowdRowError(f"field '{what}' must be a string, got {type(v).__name__}")
    return v


def missing_kind(response: str | None, reward: float | None) -> str | None:
    """Which kind of missing answer (response, reward) is, or None for a usable answer."""
    if response is None:
        return NULL_RESPONSE
    if is_blank(response):
        return EMPTY_RESPONSE
    return NULL_REWARD if reward is None else None


def _finish(row_id: str, instruction: str, answers: list[tuple[str, str | None, float | None]],
            known: set[str]) -> dict:
    if is_blank(instruction):
        raise CrowdRowError("field 'instruction' is empty")
    seen: set[str] = set()
    models, responses, rewards = [], [], []
    missing = dict.fromkeys(MISSING, 0)
    for model, response, reward in answers:
        if model not in known:
            raise CrowdRowError(f"unknown model '{model}' (not among the crowd config's generators)")
        if model in seen:
            raise CrowdRowError(f"model '{model}' answers twice")
        seen.add(model)
        kind = missing_kind(response, reward)
        if kind is not None:
            missing[kind] += 1
            continue
        models.append(model)
        responses.append(response)
        rewards.append(reward)
    if len(models) < 2:
        why = ", ".join(f"{n} {k.removeprefix('missing_').replace('_', ' ')}" for k, n in missing.items() if n)
        raise CrowdRowError(f"fewer than 2 answers with a reward ({len(models)}"
                            + (f"; missing answers: {why})" if why else ")"))
    return {C.ID: row_id, C.INSTRUCTION: instruction, C.MODELS: models, C.RESPONSES: responses,
            C.REWARDS: rewards, **missing}


def parse_canonical(obj: dict, known: set[str]) -> dict:
    """{"id", "instruction", "responses": [{"model", "response", "reward"}, ...]} -> canonical row."""
    row_id = _id(obj, C.ID)
    instruction = _text(obj, C.INSTRUCTION)
    answers = obj.get(C.RESPONSES)
    if answers is None:
        raise CrowdRowError(f"missing field '{C.RESPONSES}'")
    if not isinstance(answers, list):
        raise CrowdRowError(f"field '{C.RESPONSES}' must be a list, got {type(answers).__name__}")
    parsed = []
    for j, a in enumerate(answers):
        if not isinstance(a, dict):
            raise CrowdRowError(f"responses[{j}] must be an object, got {type(a).__name__}")
        model = _text(a, C.MODEL, f"responses[{j}].model")
        for key in (C.RESPONSE, C.REWARD):
            if key not in a:
                raise CrowdRowError(f"missing field 'responses[{j}].{key}'")
        response = _response(a[C.RESPONSE], f"responses[{j}].response")
        parsed.append((model, response, _reward(a[C.REWARD], model)))
    return _finish(row_id, instruction, parsed, known)


def parse_long(obj: dict, known: set[str]) -> dict:
    """One (id, model) row -> a partial row with a single answer (merged per id by `merge_long`).

    A null response or reward is kept as None here; `merge_long` counts it as a missing answer.
    """
    row_id = _id(obj, C.ID)
    instruction = _text(obj, C.INSTRUCTION)
    model = _text(obj, C.MODEL)
    if model not in known:
        raise CrowdRowError(f"unknown model '{model}' (not among the crowd config's generators)")
    for key in (C.RESPONSE, C.REWARD):
        if key not in obj:
            raise CrowdRowError(f"missing field '{key}'")
    reward = _reward(obj[C.REWARD], model)
    response = _response(obj[C.RESPONSE], C.RESPONSE)
    return {C.ID: row_id, C.INSTRUCTION: instruction, C.MODELS: [model], C.RESPONSES: [response],
            C.REWARDS: [reward], **dict.fromkeys(MISSING, 0)}


def merge_long(parts: list[dict], known: set[str]) -> dict:
    """All partial rows of one id (in input order) -> one canonical row."""
    first = parts[0]
    for p in parts[1:]:
        if p[C.INSTRUCTION] != first[C.INSTRUCTION]:
            raise CrowdRowError(f"id '{first[C.ID]}' has different instructions at {first[C.SOURCE]} and "
                                f"{p[C.SOURCE]}")
    answers = [(p[C.MODELS][0], p[C.RESPONSES][0], p[C.REWARDS][0]) for p in parts]
    return _finish(first[C.ID], first[C.INSTRUCTION], answers, known)


def parse_wide(obj: dict, layout: WideLayout, generators: list[str]) -> dict:
    """One row with a response and a reward per generator (flat columns or struct fields) -> canonical row.

    A generator whose response is null did not answer (a missing answer; its reward is ignored); so is
    one whose struct (JSON object) is null or absent.
    """
    row_id = _id(obj, layout.id)
    instruction = _text(obj, layout.instruction, C.INSTRUCTION)
    answers = []
    for g in generators:
        response = _at(obj, layout.response_path(g))
        if response is not None and not isinstance(response, str):
            raise CrowdRowError(f"column '{layout.response_column(g)}' must be a string")
        reward = _reward(_at(obj, layout.reward_path(g)), g) if response is not None else None
        answers.append((g, response, reward))
    return _finish(row_id, instruction, answers, set(generators))


def _at(obj: dict, path: tuple[str, ...]) -> Any:
    """The value at `path` (a column, then struct fields); None below a null or absent value."""
    value: Any = obj
    for depth, key in enumerate(path):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise CrowdRowError(f"column '{'.'.join(path[:depth])}' must be an object, got {type(value).__name__}")
        value = value.get(key)
    return value


def detect_crowd_format(obj: dict) -> str:
    """canonical / long / wide from the keys of a first row."""
    if C.RESPONSES in obj:
        return "canonical"
    if C.MODEL in obj and C.RESPONSE in obj:
        return "long"
    return "wide"
