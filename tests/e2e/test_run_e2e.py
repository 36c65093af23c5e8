"""`crowdselect run` end to end on real small models (HF SmolLM2 crowd, SmolLM2 judge, MiniLM embedder).

The resume test kills the driver (SIGKILL, its whole process group) once the first generator's shards are
written, reruns the same command, and checks: the selection equals an uninterrupted run's, no shard holds a
row twice, the first generator was not asked again (no engine built for it, no shard rewritten), and a failing row (a prompt over the second
generator's max_model_len) is recorded with its error and counted, not lost. The uninterrupted run packs its
stages (both generators side by side, the default), the killed and resumed one runs them one after another
(`schedule=sequential`, so the first generator is done while the second is not): their selections must agree.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crowdselect import cli
from crowdselect.core import columns as C

pytestmark = pytest.mark.slow
POOL = [
    {"id": "q1", "conversations": [{"from": "human", "value": "What is the capital of France?"}]},
    {"id": "q2", "messages": [{"role": "user", "content": "Name a primary colour."}]},
    {"id": "q3", "instruction": "Give a synonym for happy."},
    {"id": "q4", "instruction": "Write a haiku about rain."},
    {"id": "q5", "instruction": "Explain gravity to a child. " + "Please be very detailed. " * 12},
    {"id": "q6", "instruction": "What is two plus two?"},
]
CONFIG = """
pool: {{path: {pool}, shard_size: 2}}
generators:
  - {{name: smol-short, family: a, size_b: 0.1, model: pkg:smollm2-135m-instruct, backend: hf, max_tokens: 6}}
  - {{name: smol-long, family: b, size_b: 0.2, model: pkg:smollm2-135m-instruct, backend: hf, max_tokens: 10,
      max_model_len: 64}}
rewards:
  - {{name: judge, model: pkg:smollm2-135m-instruct, kind: judge, max_length: 384}}
selection: {{k: 3, clusters: 2}}
progress: false
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    (d / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in POOL))
    (d / "run.yaml").write_text(CONFIG.format(pool=d / "pool.jsonl"))
    return d / "run.yaml"


def shard_rows(out: Path, stage: str) -> list[dict]:
    return [r for f in sorted((out / stage).glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]


def manifest(out: Path, stage: str) -> dict:
    path = out / stage / "_manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def reference(config, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert cli.main(["run", str(config), "--out", str(out)]) == 0
    return out


def test_uninterrupted_run_outputs_and_lineage(reference):
    run = json.loads((reference / "run.json").read_text())
    assert run["pool"]["instructions"] == 6 and run["pool"]["rejected"] == 0
    gens = {g["name"]: g for g in run["generators"]}
    assert gens["smol-short"]["rows"] == 6 and gens["smol-short"]["failed"] == 0
    assert gens["smol-long"]["failed"] == 1  # q5 is over max_model_len 64
    long_rows = {r[C.ID]: r for r in shard_rows(reference, "generate/smol-long")}
    assert long_rows["q5"][C.RESPONSE] is None and long_rows["q5"][C.ERROR].startswith("prompt too long")
    row = long_rows["q1"]
    assert row[C.MODEL] == "smol-long" and row[C.BACKEND] == "hf" and row[C.MODEL_ID].endswith("smollm2-135m-instruct")
    assert json.loads(row[C.SAMPLING]) == {"max_tokens": 10}
    rewards = shard_rows(reference, "reward/judge")
    assert len(rewards) == 11 and all(1 <= r[C.REWARD] <= 10 and r[C.REWARD_MODEL] == "judge" for r in rewards)
    excluded = shard_rows(reference, "crowd_excluded")
    assert [r[C.ID] for r in excluded] == ["q5"] and "smol-long: prompt too long" in excluded[0][C.ERROR]
    crowd = shard_rows(reference, "crowd")
    assert [r[C.ID] for r in crowd] == ["q1", "q2", "q3", "q4", "q6"]
    assert [a[C.MODEL] for a in crowd[0][C.RESPONSES]] == ["smol-short", "smol-long"]
    selected = [json.loads(line) for line in (reference / "select" / "selected.jsonl").read_text().splitlines()]
    assert len(selected) == 3 and run["crowd"] == {**run["crowd"], "instructions": 5, "excluded": 1}


def test_killed_driver_resumes_to_the_same_selection(config, ray_local, reference, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "crowdselect.cli", "run", str(config), "--out", str(out), "schedule=sequential"]
    # the killed driver joins this session's Ray as a job joins a cluster; its actors die with it
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while not manifest(out, "generate/smol-short").get("complete"):
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = manifest(out, "generate/smol-short")
    assert not manifest(out, "generate/smol-long").get("complete") and not (out / "select").exists()

    kept = {p.name: p.stat().st_mtime_ns for p in (out / "generate/smol-short").glob("shard-*.parquet")}
    import crowdselect.generate as generate_pkg

    asked, real_build = [], generate_pkg.build_generate

    def build_generate(spec):  # the real engine, and a note of which generator it was built for
        asked.append(spec.name)
        return real_build(spec)

    monkeypatch.setattr(generate_pkg, "build_generate", build_generate)
    assert cli.main(["run", str(config), "--out", str(out), "schedule=sequential"]) == 0
    assert asked == ["smol-long"], f"generators asked again on resume: {asked}"  # the finished one was not
    assert manifest(out, "generate/smol-short")["extra"]["written"] == first["extra"]["written"]  # not redone
    assert {p.name: p.stat().st_mtime_ns for p in (out / "generate/smol-short").glob("shard-*.parquet")} == kept
    assert (out / "select" / "selected.jsonl").read_text() == (reference / "select" / "selected.jsonl").read_text()
    for stage in ("generate/smol-short", "generate/smol-long", "reward/judge", "crowd"):
        keys = [(r[C.ID], r.get(C.MODEL)) for r in shard_rows(out, stage)]
        assert len(keys) == len(set(keys)), f"duplicate rows in {stage}"
        assert len(keys) == len(shard_rows(reference, stage))


def test_bad_pool_row_is_a_clear_error(tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "fine"}\n{"conversations": "oops"}\n')
    cfg = tmp_path / "run.yaml"
    cfg.write_text(CONFIG.format(pool=pool))
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{pool}:2: conversation is empty or not a list" in err and "Traceback" not in err
