"""Both executors (Ray Data, in-process) and an independent reference agree on every crowd shape.

Each case draws a random crowd (tests/crowd_shapes.py), writes it in one input shape (canonical, long, wide;
JSONL or Parquet; one file or two; blocks small enough to split it), runs `run_select` on Ray Data (the
session's local Ray) and in this process, and checks
- the two runs give byte-identical selected.jsonl and the same scores.parquet (the report's 2-D view to
  float rounding: torch's sums depend on its thread count);
- both against a reference written here with numpy, scipy and sklearn from the README's rules, not the
  engine's code: row acceptance (missing answers, fewer than 2 answers, duplicate ids), difficulty
  (-mean), separability (population variance), stability (mean within-family Spearman, average ranks,
  undefined where no family has 2 answering members of different sizes and rewards), sklearn's
  QuantileTransformer(n_quantiles=min(n, 1000)), the weighted score with the rescale rule for undefined
  stability, the best answer (ties to the first generator in config order), the quota per cluster with
  the remainder by score (ties by id) on the run's own scores and clusters (the clusters come from k-means
  on embeddings, which the reference does not redo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from crowd_shapes import (
    DOTTED,
    NO_SIBLINGS,
    SHAPE_INPUT,
    SHAPES,
    TIED_SIZES,
    CrowdSpec,
    crowd_yaml,
    random_crowd,
    write_records,
)
from scipy.stats import spearmanr
from sklearn.preprocessing import QuantileTransformer

from crowdselect.core.config import build
from crowdselect.select.config import SelectConfig
from crowdselect.select.job import run_select

WEIGHTS = (1.0, 1.0, 2.0)
METRICS = ("difficulty", "separability", "stability")


@dataclass(frozen=True)
class Case:
    spec: CrowdSpec
    shape: str
    suffix: str = ".jsonl"
    lines_per_block: int = 4096
    files: int = 1
    k: int = 10
    clusters: int = 0  # 0: --no-cluster

    @property
    def id(self) -> str:
        s = self.spec
        parts = [self.shape, self.suffix[1:], f"n{s.n}", f"blocks{self.lines_per_block}"]
        parts += [p for p, on in (("missing", s.missing), ("ties", s.ties), ("dups", s.duplicates), ("silent", s.silent),
                                  (f"{self.files}files", self.files > 1), (f"texts{s.texts}", s.texts),
                                  (f"{len(s.crowd)}gen", s.crowd is not CrowdSpec.crowd),
                                  (f"clusters{self.clusters}", self.clusters)) if on]
        return "-".join(parts)


CASES = [
    Case(CrowdSpec(1), "canonical", k=1),
    Case(CrowdSpec(2, silent=("c-3b",), seed=1), "wide", ".parquet", k=1),
    Case(CrowdSpec(700, missing=0.15, ties=True, duplicates=5, seed=2), "canonical", lines_per_block=128, k=40),
    Case(CrowdSpec(300, missing=0.1, ties=True, duplicates=3, seed=4), "long", ".parquet", lines_per_block=256,
         files=2, k=30),
    Case(CrowdSpec(500, missing=0.2, duplicates=4, seed=5), "wide", lines_per_block=64, k=50),
    Case(CrowdSpec(2500, missing=0.05, seed=6), "wide", ".parquet", lines_per_block=512, k=100),
    Case(CrowdSpec(200, crowd=NO_SIBLINGS, seed=7), "canonical", ".parquet", lines_per_block=50, k=20),
    Case(CrowdSpec(150, crowd=TIED_SIZES, ties=True, missing=0.1, seed=8), "canonical", lines_per_block=40, k=15),
    # one struct column per generator (the paper's pool), dotted names and reward keys, two reward keys
    Case(CrowdSpec(400, crowd=DOTTED, missing=0.15, ties=True, duplicates=3, seed=12), "struct", lines_per_block=64,
         k=40),
    Case(CrowdSpec(900, crowd=DOTTED, missing=0.1, seed=13), "struct", ".parquet", lines_per_block=128, files=2, k=60),
    # clustered, with the real MiniLM: the long table split into blocks (the shape that crashed in-process),
    # more clusters than distinct instructions (empty clusters, the remainder goes elsewhere), k % clusters
    Case(CrowdSpec(240, missing=0.1, duplicates=2, seed=9), "long", lines_per_block=200, k=30, clusters=6),
    Case(CrowdSpec(24, texts=4, seed=10), "canonical", k=12, clusters=6),
    Case(CrowdSpec(150, missing=0.1, seed=11), "wide", ".parquet", lines_per_block=40, k=23, clusters=5),
]


def write_case(case: Case, folder: Path) -> tuple[list[dict], list[str]]:
    """The crowd's canonical rows and the files written (records split into `files` parts, in order)."""
    rows = random_crowd(case.spec)
    records = SHAPES[case.shape](rows, [g for g, _, _ in case.spec.crowd])
    paths = []
    for part in range(case.files):
        path = folder / f"crowd-{part}{case.suffix}"
        write_records(records[part::case.files] if case.files > 1 else records, path)
        paths.append(str(path))
    return rows, paths


def config(case: Case, paths: list[str], out: Path, executor: str) -> SelectConfig:
    crowd = [{"name": n, "family": f, "size_b": s} for n, f, s in case.spec.crowd]
    selection = {"k": case.k, "weights": list(WEIGHTS), "cluster": bool(case.clusters),
                 "clusters": case.clusters or 10}
    return build(SelectConfig, {
        "generators": crowd, "selection": selection, "out": str(out), "executor": executor,
        "input": {"path": paths, **SHAPE_INPUT[case.shape], "on_bad_rows": "quarantine",
                  "lines_per_block": case.lines_per_block}}, file="test")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_executors_and_the_reference_agree(ray_local, tmp_path, case):
    rows, paths = write_case(case, tmp_path)
    for executor in ("ray", "local"):
        assert run_select(config(case, paths, tmp_path / executor, executor)) == 0
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    assert json.loads((local_out / "run.json").read_text())["executor"] == "local"
    assert (ray_out / "selected.jsonl").read_bytes() == (local_out / "selected.jsonl").read_bytes()
    ray_scores = pq.read_table(ray_out / "scores.parquet").sort_by("id")
    local_scores = pq.read_table(local_out / "scores.parquet").sort_by("id")
    assert local_scores.schema == ray_scores.schema
    exact = [c for c in ray_scores.column_names if c not in ("pc1", "pc2")]
    assert [c for c in exact if not same_values(local_scores[c], ray_scores[c])] == []
    for c in set(ray_scores.column_names) - set(exact):
        assert np.allclose(local_scores[c].to_numpy(), ray_scores[c].to_numpy(), atol=1e-4)
    check_against_reference(case, rows, ray_out, n_records=sum(pq_or_jsonl_rows(p) for p in paths))


def test_the_long_clustered_shape_agrees_on_a_two_cpu_ray(tmp_path):
    """The CLI as a user on a 2-core machine runs it (its own Ray with 2 CPUs, not the session's 8): a long
    table in several blocks, clustered. In-process this crashed (ArrowInvalid: a pickled embedding block);
    on a 2-CPU Ray, empty blocks with no columns reached k-means (KeyError). Both now give the same bytes."""
    case = Case(CrowdSpec(300, seed=14), "long", lines_per_block=512, k=12, clusters=4)
    _, paths = write_case(case, tmp_path)
    (tmp_path / "crowd.yaml").write_text(crowd_yaml(case.spec.crowd))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("RAY_ADDRESS", None)
    for executor in ("ray", "local"):
        cmd = [sys.executable, "-m", "crowdselect.cli", "select", "--config", str(tmp_path / "crowd.yaml"),
               "--input", *paths, "--format", "long", "--k", "12", "--clusters", "4", "--executor", executor,
               "--out", str(tmp_path / executor), "input.lines_per_block=512", "ray.num_cpus=2",
               f"ray.temp_dir={os.environ.get('CROWDSELECT_RAY_TMP', '/tmp/rcs')}-cli"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "ray" / "selected.jsonl").read_bytes() == (tmp_path / "local" / "selected.jsonl").read_bytes()


def same_values(a, b) -> bool:
    """Equal column values, NaN equal to NaN (Arrow's own equality says NaN != NaN)."""
    if pa.types.is_floating(a.type):
        return np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)
    return a.to_pylist() == b.to_pylist()


def pq_or_jsonl_rows(path: str) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.endswith(".parquet") else len(Path(path).read_text().splitlines())


# -- the reference ------------------------------------------------------------------------------------------
def usable(answer: dict) -> bool:
    """README "Row rules": a null or blank response, or a null reward, is a missing answer."""
    return answer["response"] is not None and bool(answer["response"].strip()) and answer["reward"] is not None


def accept(rows: list[dict], shape: str) -> tuple[list[dict], int]:
    """(accepted rows, rejected input rows): fewer than 2 usable answers is a bad row; canonical and wide keep
    the first row of an id and reject later ones; a long table merges an id's lines, and an id whose lines
    name a model twice is rejected whole."""
    if shape == "long":
        by_id: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_id[r["id"]] += [{**a, "_i": r["instruction"]} for a in r["responses"]]
        good, rejected = [], 0
        for rid, answers in by_id.items():
            models = [a["model"] for a in answers]
            if len(set(models)) < len(models) or sum(map(usable, answers)) < 2:
                rejected += len(answers)
            else:
                good.append({"id": rid, "instruction": answers[0]["_i"], "responses": answers})
        return good, rejected
    good, seen, rejected = [], set(), 0
    for r in rows:
        if sum(map(usable, r["responses"])) < 2 or r["id"] in seen:
            rejected += 1
            continue
        seen.add(r["id"])
        good.append(r)
    return good, rejected


def reference_metrics(rows: list[dict], crowd: tuple) -> dict[str, np.ndarray]:
    names = [g for g, _, _ in crowd]
    R = np.full((len(rows), len(names)), np.nan)
    for i, r in enumerate(rows):
        for a in r["responses"]:
            if usable(a):
                R[i, names.index(a["model"])] = a["reward"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"difficulty": -np.nanmean(R, axis=1), "separability": np.nanvar(R, axis=1)}
        families = defaultdict(list)
        for j, (_, fam, size) in enumerate(crowd):
            families[fam].append((j, size))
        stab = np.full(len(rows), np.nan)
        for i in range(len(rows)):
            rhos = []
            for members in families.values():
                got = [(R[i, j], s) for j, s in members if not np.isnan(R[i, j])]
                if len(got) >= 2:
                    # NaN if constant; rounded: scipy's 0.9999999999999999 is 1, and ties must stay ties
                    rhos.append(round(spearmanr([g[0] for g in got], [g[1] for g in got]).statistic, 12))
            if any(not np.isnan(x) for x in rhos):
                stab[i] = np.nanmean(rhos)
        out["stability"] = stab
    out["best"] = np.argmax(np.where(np.isnan(R), -np.inf, R), axis=1)
    out["n_answers"] = (~np.isnan(R)).sum(axis=1)
    out["R"] = R
    return out


def reference_scores(m: dict[str, np.ndarray], crowd: tuple) -> tuple[dict[str, np.ndarray], np.ndarray]:
    n = len(m["difficulty"])
    q = {}
    for name in METRICS:
        x = m[name].reshape(-1, 1)
        if np.isnan(x).all():
            q[name] = np.full(n, np.nan)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q[name] = QuantileTransformer(n_quantiles=min(n, 1000), subsample=None).fit_transform(x)[:, 0]
    wd, ws, wt = WEIGHTS
    base = wd * q["difficulty"] + ws * q["separability"]
    siblings = any(sum(f == fam for _, f, _ in crowd) >= 2 for _, fam, _ in crowd)
    if not siblings or np.isnan(m["stability"]).all():
        return q, base
    t = q["stability"]
    return q, np.where(np.isnan(t), base * (wd + ws + wt) / (wd + ws), base + wt * np.nan_to_num(t))


def reference_selection(scores: np.ndarray, ids: list[str], clusters: np.ndarray, k: int, n_clusters: int) -> list[str]:
    """Equal quota per cluster, the remainder by score; ranks by score (NaN last), ties by id."""
    order = sorted(range(len(ids)), key=lambda i: (np.isnan(scores[i]), -np.nan_to_num(scores[i]), ids[i]))
    k = min(k, len(ids))
    taken: list[int] = []
    if n_clusters > 1:
        for c in range(n_clusters):
            taken += [i for i in order if clusters[i] == c][: k // n_clusters]
    taken += [i for i in order if i not in taken][: k - len(taken)]
    return [ids[i] for i in order if i in taken]


def check_against_reference(case: Case, rows: list[dict], out: Path, n_records: int) -> None:
    good, rejected_rows = accept(rows, case.shape)
    good.sort(key=lambda r: r["id"])
    run = json.loads((out / "run.json").read_text())
    counts = run["counts"]
    assert counts["input_rows"] == n_records and counts["rejected_rows"] == rejected_rows
    assert counts["accepted_instructions"] == len(good)

    scores = pq.read_table(out / "scores.parquet").sort_by("id").to_pydict()
    ids = [r["id"] for r in good]
    assert scores["id"] == ids
    m = reference_metrics(good, case.spec.crowd)
    q, score = reference_scores(m, case.spec.crowd)
    for name in METRICS:
        got = np.array(scores[name], dtype=float)
        assert np.allclose(got, m[name], atol=1e-9, equal_nan=True), name
        assert np.allclose(np.array(scores[f"q_{name}"], dtype=float), q[name], atol=1e-9, equal_nan=True), name
    assert np.allclose(np.array(scores["score"], dtype=float), score, atol=1e-9, equal_nan=True)
    names = [g for g, _, _ in case.spec.crowd]
    assert scores["best_model"] == [names[j] for j in m["best"]]
    assert scores["n_answers"] == m["n_answers"].tolist()

    got_scores = np.array(scores["score"], dtype=float)
    want = reference_selection(got_scores, ids, np.array(scores["cluster"]), case.k, case.clusters)
    selected = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    assert [s["id"] for s in selected] == want
    by_id = {r["id"]: (r, i) for i, r in enumerate(good)}
    for s in selected:  # the kept answer is the best usable one
        row, i = by_id[s["id"]]
        best = next(a for a in row["responses"] if a["model"] == names[m["best"][i]])
        assert (s["model"], s["response"], s["reward"]) == (best["model"], best["response"], best["reward"])
