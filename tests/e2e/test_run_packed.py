"""`crowdselect run` with stages side by side, on the dry backend and a local Ray of 8 logical CPUs.

Four dry generators (1 CPU each) fit the 8 CPUs together beside the CPU kept for Ray Data's tasks, so the
packed run starts them at once, and the reward model beside them, scoring each shard once all four wrote it. The packed run's crowd, rewards and
selection must be the one-after-another run's byte for byte, its run.json must show the generators
overlapping (and the sequential run's must not), `--plan` prints the waves and writes nothing, and a packed
run whose driver is killed mid-run resumes to the same selection without a duplicated row.
"""

import json
import os
import re
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
ROOT = Path(__file__).resolve().parents[2]
GENERATORS = [("alpha-1b", "alpha", 1, 16), ("alpha-7b", "alpha", 7, 24), ("beta-3b", "beta", 3, 20),
              ("beta-14b", "beta", 14, 28)]
CONFIG = """
pool: {{path: {pool}, shard_size: 5}}
generators:
{generators}
rewards:
  - {{name: dry-judge, kind: judge, backend: dry}}
selection: {{k: 6, clusters: 2}}
ray: {{num_cpus: 8}}
progress: false
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("packed")
    pool = d / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"q{i:03d}", "instruction": f"Question {i}: " + "why " * (i % 7)}) + "\n"
                            for i in range(40)))
    gens = "\n".join(f"  - {{name: {n}, family: {f}, size_b: {s}, backend: dry, max_tokens: {t}, "
                     "resources: {batch_size: 5}}" for n, f, s, t in GENERATORS)
    path = d / "run.yaml"
    path.write_text(CONFIG.format(pool=pool, generators=gens))
    return path


def run(config: Path, out: Path, *extra: str) -> dict:
    assert cli.main(["run", str(config), "--out", str(out), *extra]) == 0
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def sequential(config, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    return out, run(config, out, "schedule=sequential")


@pytest.fixture(scope="module")
def packed(config, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed_out")
    return out, run(config, out)


def stage_files(out: Path) -> dict[str, bytes]:
    files = [p for d in ("generate", "reward", "crowd", "crowd_excluded") for p in (out / d).rglob("shard-*.parquet")]
    files.append(out / "select" / "selected.jsonl")
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def windows(run_json: dict, prefix: str) -> list[tuple[float, float]]:
    return [(s["start"], s["end"]) for s in run_json["stages"] if s["name"].startswith(prefix)]


def test_packed_run_writes_the_sequential_runs_bytes(packed, sequential):
    (p_out, p_run), (s_out, _) = packed, sequential
    p_files, s_files = stage_files(p_out), stage_files(s_out)
    assert len(p_files) == 4 * 8 + 8 + 8 + 8 + 1  # 8 shards per generate, reward, crowd, crowd_excluded stage
    assert p_files.keys() == s_files.keys()
    differ = [name for name in p_files if p_files[name] != s_files[name]]
    assert not differ, f"packed and sequential runs differ in {differ}"
    assert p_run["crowd"]["instructions"] == 40 and len((p_out / "select" / "selected.jsonl").read_text().splitlines()) == 6


def test_run_json_shows_the_generators_overlapping(packed, sequential):
    (_, p_run), (_, s_run) = packed, sequential
    assert p_run["schedule"] == "packed" and s_run["schedule"] == "sequential"
    names = [s["name"] for s in p_run["stages"]]
    assert {"ingest", "crowd", "select", "reward:dry-judge"} <= set(names) and len(names) == len(set(names)) == 8
    gens = windows(p_run, "generate:")
    assert max(start for start, _ in gens) < min(end for _, end in gens), f"no common moment: {gens}"
    waves = {s["name"]: s["wave"] for s in p_run["stages"]}
    assert {waves[f"generate:{g[0]}"] for g in GENERATORS} == {1} and waves["reward:dry-judge"] == 1
    (reward_start, reward_end), = windows(p_run, "reward:")  # scores shards as the generators write them
    assert reward_start < min(end for _, end in gens) and reward_end >= max(end for _, end in gens)
    (s_reward_start, _), = windows(s_run, "reward:")
    assert s_reward_start >= max(end for _, end in windows(s_run, "generate:"))
    seq = sorted(windows(s_run, "generate:"))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(seq, seq[1:], strict=False))
    for s in p_run["stages"]:  # CPU only: nothing reserved; the model stages' replicas were measured busy
        assert s["gpu_seconds_reserved"] == 0.0 and s["gpu_seconds_busy"] == 0.0 and s["end"] >= s["start"]
        if s["name"].startswith(("generate:", "reward:")):
            assert s["replica_seconds_busy"] > 0


def test_plan_prints_the_waves_and_writes_nothing(config, ray_local, tmp_path, capsys):
    out = tmp_path / "planned"
    assert cli.main(["run", str(config), "--out", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "plan (packed): 5 model stages in 1 wave(s) for 40 instructions" in text
    first = text.split("wave 1:")[1]
    assert all(f"generate:{g[0]}" in first for g in GENERATORS) and "reward:dry-judge" in first
    assert "1 x {CPU 1}" in first and "estimated:" in text
    assert not out.exists()


def test_killed_packed_run_resumes_to_the_same_selection(config, ray_local, sequential, tmp_path):
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "crowdselect.cli", "run", str(config), "--out", str(out)]
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifests = [out / "generate" / g[0] / "_manifest.json" for g in GENERATORS]
    try:
        deadline = time.time() + 300
        while not any(m.exists() and json.loads(m.read_text()).get("shards") for m in manifests):
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "select").exists()
    recorded = {m.parent / f"{s}.parquet" for m in manifests if m.exists() for s in json.loads(m.read_text())["shards"]}
    kept = {p: p.stat().st_mtime_ns for p in recorded}  # a shard file not yet in its manifest is redone
    run(config, out)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "finished shards were written again"
    assert stage_files(out) == stage_files(sequential[0])
    for stage in ["reward/dry-judge", "crowd"] + [f"generate/{g[0]}" for g in GENERATORS]:
        rows = [r for f in sorted((out / stage).glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]
        keys = [(r[C.ID], r.get(C.MODEL)) for r in rows]
        assert len(keys) == len(set(keys)), f"duplicate rows in {stage}"


def ends_in_one_line(err: str) -> bool:
    """The run's own error is its last line, one line (Ray's log of the failed task may stand above it)."""
    last = err.strip().splitlines()[-1]
    return last.startswith("crowdselect: error: ") and "rerun the same command" in last


def test_the_workers_write_the_bytes_the_driver_writes(config, ray_local, sequential, tmp_path):
    out = tmp_path / "workers"
    assert sequential[1]["shard_writer"] == "driver"  # auto for a local folder
    assert run(config, out, "schedule=sequential", "shard_writer=workers")["shard_writer"] == "workers"
    assert stage_files(out) == stage_files(sequential[0])
    assert not list(out.rglob("_parts"))


def test_an_engine_that_dies_once_is_restarted_and_the_run_ends_as_a_clean_one(config, ray_local, sequential, tmp_path):
    out = tmp_path / "died"
    run(config, out, "generators[1].fail={mode: exit, at_id: q013}")
    assert stage_files(out) == stage_files(sequential[0])


def test_a_hung_engine_fails_the_stage_naming_the_shards_left_and_a_rerun_resumes(config, ray_local, sequential,
                                                                                  tmp_path, capsys):
    out = tmp_path / "hung"
    hang = ["generators[2].fail={mode: hang, at_id: q022}", "stall_timeout_s=20", "schedule=sequential"]
    assert cli.main(["run", str(config), "--out", str(out), *hang]) == 4
    err = capsys.readouterr().err
    assert "crowdselect: error: generate beta-3b: no row came back for 20 s (an engine out of memory or hung" in err
    assert "shard(s) written in" in err and "left: " in err and "shard-00004" in err and ends_in_one_line(err)
    manifest = out / "generate" / "beta-3b" / "_manifest.json"  # none when the stuck task held every shard
    assert "shard-00004" not in (json.loads(manifest.read_text())["shards"] if manifest.exists() else {})
    run(config, out, "schedule=sequential")  # the engine is back: the shards left are done, the rest kept
    assert stage_files(out) == stage_files(sequential[0])


def test_an_engine_that_keeps_dying_fails_the_stage_after_its_restarts(config, ray_local, tmp_path, capsys):
    out = tmp_path / "dies"
    assert cli.main(["run", str(config), "--out", str(out), "generators[0].fail={mode: exit, at_id: q031, times: 99}",
                     "schedule=sequential"]) == 4
    err = capsys.readouterr().err
    assert "crowdselect: error: generate alpha-1b failed: ActorDiedError: The actor died" in err, err
    assert re.search(r"[0-5] of 8 shard\(s\) written in .*, left: .*shard-0000[0-6]", err), err
    assert "rerun the same command to do the shards left" in err and ends_in_one_line(err)


def test_a_failed_generator_stops_the_reward_stage_waiting_for_its_shards(config, ray_local, tmp_path, capsys):
    out = tmp_path / "failed"
    start = time.time()
    assert cli.main(["run", str(config), "--out", str(out), "generators[3].fail={mode: error, at_id: q005}"]) == 4
    err = capsys.readouterr().err
    assert "crowdselect: error: generate beta-14b failed: RuntimeError: dry generator beta-14b: rehearsed engine " \
           "error at row q005" in err and ends_in_one_line(err), err
    assert time.time() - start < 240  # not the stall timeout: the reward stage was told
    manifest = out / "reward" / "dry-judge" / "_manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["complete"] is False
