"""Random crowds in every input shape, for the differential tests (tests/e2e/test_executors_agree.py).

One generator, `random_crowd(spec)`, draws the crowd itself: canonical rows `{id, instruction, responses:
[{model, response, reward}]}` in input order, with the awkward parts a spec asks for (missing answers of
each kind, reward ties, duplicate ids). A shape is one function from those rows to the records of a file:

    SHAPES = {"canonical": ..., "long": ..., "wide": ..., "struct": ...}   # rows, generator names -> records
    write_records(records, path)                                  # .jsonl or .parquet by suffix

so a new input layout is one more `rows -> records` function, its entry in SHAPES, and in SHAPE_INPUT the
`input:` keys it is read with ("struct": one struct column per generator, the paper's pool's layout). Pure Python + numpy +
pyarrow: no Ray, no crowdselect import, so the test's reference cannot borrow the engine's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# (name, family, size in billions), in config order
CROWD = (("a-1b", "a", 1), ("a-7b", "a", 7), ("a-13b", "a", 13), ("b-2b", "b", 2), ("b-9b", "b", 9),
         ("c-3b", "c", 3))  # family c has one member
NO_SIBLINGS = (("x-1b", "x", 1), ("y-2b", "y", 2), ("z-3b", "z", 3))  # stability undefined everywhere
TIED_SIZES = (("d-7b", "d", 7), ("d-7b-v2", "d", 7), ("e-1b", "e", 1), ("e-8b", "e", 8))  # family d: no size order
DOTTED = (("q2.5-1.5b", "q2.5", 1.5), ("q2.5-7b", "q2.5", 7), ("q2.5-72b", "q2.5", 72), ("g-2.0-2b", "g-2.0", 2),
          ("g-2.0-9b", "g-2.0", 9))  # names with dots, as the real ones have (Qwen2.5-7B-Instruct)
STRUCT_REWARDS = ("rm.main-v0.1", "rm.other")  # the primary reward key first; dotted, as ArmoRM-Llama3-8B-v0.1

WORDS = ("sort list python explain poem ocean history rome recipe bread tax law physics orbit write story "
         "summarise article debug code translate french plan trip compare phones").split()


@dataclass(frozen=True)
class CrowdSpec:
    n: int  # instructions drawn (duplicates come on top)
    crowd: tuple = CROWD
    missing: float = 0.0  # share of answers that are missing (null response, empty response, null reward)
    ties: bool = False  # rewards on a coarse grid: ties within rows, families with all-equal rewards
    duplicates: int = 0  # rows repeated later with the same id (and other rewards)
    texts: int = 0  # > 0: only this many distinct instructions (identical embeddings: empty k-means clusters)
    silent: tuple = ()  # generators that never answer (in Parquet: a column of null type)
    seed: int = 0


def random_crowd(spec: CrowdSpec) -> list[dict]:
    """Canonical rows in input order (see the module docstring)."""
    rng = np.random.default_rng(spec.seed)
    sizes = np.log([s for _, _, s in spec.crowd])
    hardness = rng.normal(0, 1, (spec.n, 1))
    rewards = sizes[None, :] - hardness + rng.normal(0, 0.8, (spec.n, len(spec.crowd)))
    if spec.ties:
        rewards = np.round(rewards)  # integer rewards: many ties
    texts = [" ".join(rng.choice(WORDS, 6)) for _ in range(spec.texts or spec.n)]
    rows = []
    for i in range(spec.n):
        answers = []
        for j, (name, _, _) in enumerate(spec.crowd):
            answer = {"model": name, "response": f"[{name}] answer {i} " + "x" * int(rng.integers(0, 9)),
                      "reward": float(rewards[i, j])}
            if name in spec.silent:
                answer.update(response=None, reward=None)
            elif rng.random() < spec.missing:
                answer.update(({"response": None}, {"response": " "}, {"reward": None})[int(rng.integers(3))])
            answers.append(answer)
        text = texts[i % len(texts)] if spec.texts else f"{texts[i]} (question {i})"
        rows.append({"id": f"q{i:05d}", "instruction": text, "responses": answers})
    for _ in range(spec.duplicates):  # a later row repeating an earlier id, with other rewards
        first = rows[int(rng.integers(0, spec.n))]
        rows.append({**first, "responses": [{**a, "reward": a["reward"] if a["reward"] is None else a["reward"] + 1}
                                            for a in first["responses"]]})
    return rows


def canonical_records(rows: list[dict], names: list[str]) -> list[dict]:
    return rows


def long_records(rows: list[dict], names: list[str], seed: int = 0) -> list[dict]:
    """One record per (id, model), shuffled: a long table's order must not matter."""
    out = [{"id": r["id"], "instruction": r["instruction"], **a} for r in rows for a in r["responses"]]
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def wide_records(rows: list[dict], names: list[str]) -> list[dict]:
    """`{name}_response` / `{name}_reward` columns per generator (the default input.wide templates)."""
    out = []
    for r in rows:
        rec = {"id": r["id"], "instruction": r["instruction"]}
        by_model = {a["model"]: a for a in r["responses"]}
        for g in names:
            rec[f"{g}_response"] = by_model[g]["response"]
            rec[f"{g}_reward"] = by_model[g]["reward"]
        out.append(rec)
    return out


def struct_records(rows: list[dict], names: list[str]) -> list[dict]:
    """One struct column per generator, as Magpie-100K-Generator-Zoo: `{"content": answer, "<rm>": reward, ...}`
    with two reward keys (the second a different score); a generator that did not answer (null response) is a
    null struct; `uuid` holds the id."""
    out = []
    for r in rows:
        rec = {"uuid": r["id"], "instruction": r["instruction"]}
        by_model = {a["model"]: a for a in r["responses"]}
        for g in names:
            a = by_model[g]
            other = None if a["reward"] is None else -a["reward"]  # opposite ranking: using it would show
            rec[g] = None if a["response"] is None else {"content": a["response"], STRUCT_REWARDS[0]: a["reward"],
                                                          STRUCT_REWARDS[1]: other}
        out.append(rec)
    return out


SHAPES = {"canonical": canonical_records, "long": long_records, "wide": wide_records, "struct": struct_records}
# the `input:` config keys each shape is read with (a layout that needs a column mapping adds it here)
SHAPE_INPUT = {"canonical": {"format": "canonical"}, "long": {"format": "long"}, "wide": {"format": "wide"},
               "struct": {"format": "auto", "wide": {"id": "uuid", "reward": "{name}." + STRUCT_REWARDS[0]}}}


def write_records(records: list[dict], path: Path) -> None:
    """JSONL (one object a line) or Parquet (types inferred, as a user's pandas/pyarrow export would)."""
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))


def crowd_yaml(crowd: tuple) -> str:
    return "generators:\n" + "".join(f"  - {{name: {n}, family: {f}, size_b: {s}}}\n" for n, f, s in crowd)
