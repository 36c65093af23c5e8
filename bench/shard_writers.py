"""Who writes a run's shards: the Ray workers (`shard_writer: workers`) against the driver (`driver`), end to end.

    .venv/bin/python bench/shard_writers.py                 # 1M instructions, 2 dry generators + 1 dry reward
    .venv/bin/python bench/shard_writers.py --rows 100000   # a minute or two

The same `crowdselect run` (dry backend: no model, so the rows' trip through the stages is what is timed) runs
twice as a subprocess, once per writer, each on its own local Ray: ingest -> generate x 2 -> reward -> crowd ->
select (no clustering, k 1000). Printed per writer: the driver process's peak memory (its own: Ray's workers
and the raylet are not counted) during the generate and reward stages, where the writer works, as USS (RSS
would also count the object-store pages the driver maps to read blocks), and how much it grew there over
its size when they started; its RSS peak over the whole run (ingest holds the pool in the driver either
way, and Python keeps the memory it freed); the model stages' seconds and rows/s (answers + scores over the
generate and reward stages' wall time, from run.json), the whole run's wall time; then the ratios
workers / driver. The two runs' shards and selections must be byte-identical. Absolute numbers on a shared
machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
pool: {{path: {pool}, shard_size: {shard_size}}}
generators:
  - {{name: small, family: f, size_b: 1, backend: dry, max_tokens: {words}, resources: {{batch_size: 1024}}}}
  - {{name: large, family: f, size_b: 7, backend: dry, max_tokens: {words}, resources: {{batch_size: 1024}}}}
rewards:
  - {{name: judge, kind: judge, backend: dry, resources: {{batch_size: 1024}}}}
selection: {{k: 1000, cluster: false}}
ray: {{num_cpus: {cpus}}}
schedule: sequential
progress: false
"""


def write_pool(path: Path, rows: int) -> None:
    with path.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": f"q{i:08d}", "instruction": f"Question {i}: explain item {i % 977} in detail."})
                    + "\n")


def run(config: Path, out: Path, writer: str) -> dict:
    """Run once; returns the driver's peak RSS over the whole run (wait4), its peak USS in the generate and
    reward stages and how much that grew over their start (MiB; sampled every 0.2 s, placed in the stages'
    windows by run.json's start and end), wall seconds and run.json."""
    import psutil

    cmd = [sys.executable, "-m", "crowdselect.cli", "run", str(config), "--out", str(out), f"shard_writer={writer}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:  # USS: the driver's own pages, not the object-store pages it maps to read blocks
        driver = psutil.Process(proc.pid)
        while not stop.wait(0.2):
            try:
                samples.append((time.time(), driver.memory_full_info().uss / 2**20))
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{writer}: crowdselect run failed:\n{proc.stderr.read()[-3000:]}")
    run_json = json.loads((out / "run.json").read_text())
    model = [s for s in run_json["stages"] if s["name"].startswith(("generate:", "reward:"))]
    start, end = min(s["start"] for s in model), max(s["end"] for s in model)
    in_stages = [rss for t, rss in samples if start <= t <= end]
    before = [rss for t, rss in samples if t < start]
    return {"peak_mib": usage.ru_maxrss / 1024, "stage_peak_mib": max(in_stages, default=float("nan")),
            "stage_growth_mib": max(in_stages, default=float("nan")) - (before[-1] if before else float("nan")),
            "wall_s": wall, "run": run_json}


def model_stage_rate(run_json: dict) -> tuple[float, int]:
    """(seconds, rows) of the generate and reward stages."""
    stages = [s for s in run_json["stages"] if s["name"].startswith(("generate:", "reward:"))]
    rows = sum(g["rows"] for g in run_json["generators"]) + sum(r["rows"] for r in run_json["rewards"])
    return sum(s["seconds"] for s in stages), rows


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.glob("*/**/shard-*.parquet")) + [out / "select" / "selected.jsonl"]:
        h.update(str(p.relative_to(out)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shard-size", type=int, default=10_000)
    ap.add_argument("--words", type=int, default=48, help="words per dry answer")
    ap.add_argument("--cpus", type=int, default=4, help="the local Ray's logical CPUs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="shard-writers-") as tmp:
        d = Path(tmp)
        write_pool(d / "pool.jsonl", args.rows)
        config = d / "run.yaml"
        config.write_text(CONFIG.format(pool=d / "pool.jsonl", shard_size=args.shard_size, words=args.words,
                                        cpus=args.cpus))
        print(f"{args.rows:,} instructions, shards of {args.shard_size:,}, 2 dry generators ({args.words} words) "
              f"+ 1 dry reward, local Ray of {args.cpus} CPUs, {os.cpu_count()} cores", flush=True)
        results = {}
        for writer in ("driver", "workers"):
            r = run(config, d / writer, writer)
            seconds, rows = model_stage_rate(r["run"])
            r.update(seconds=seconds, rate=rows / seconds, digest=digest(d / writer))
            assert r["run"]["shard_writer"] == writer
            results[writer] = r
            print(f"  {writer:<8} driver USS: peak in generate+reward {r['stage_peak_mib']:5.0f} MiB (+"
                  f"{r['stage_growth_mib']:4.0f} MiB over their start); RSS peak, whole run {r['peak_mib']:5.0f} MiB | "
                  f"generate+reward {seconds:6.1f} s ({r['rate']:7,.0f} rows/s) | whole run {r['wall_s']:6.1f} s",
                  flush=True)
        w, dr = results["workers"], results["driver"]
        print(f"workers / driver: driver peak memory in generate+reward {w['stage_peak_mib'] / dr['stage_peak_mib']:.2f}x "
              f"(its growth there {w['stage_growth_mib']:.0f} vs {dr['stage_growth_mib']:.0f} MiB; whole run "
              f"{w['peak_mib'] / dr['peak_mib']:.2f}x), "
              f"rows/s {w['rate'] / dr['rate']:.2f}x, whole run {w['wall_s'] / dr['wall_s']:.2f}x; "
              f"same shards and selection: {w['digest'] == dr['digest']}")
        if w["digest"] != dr["digest"]:
            raise SystemExit("the two writers wrote different bytes")


if __name__ == "__main__":
    main()
