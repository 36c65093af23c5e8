"""`crowdselect select` on Ray Data against the in-process executor, one node, same process: the ratio.

    .venv/bin/python bench/select_executors.py            # 1M x 19 canonical JSONL, --no-cluster --k 10000
    .venv/bin/python bench/select_executors.py --quick    # 100K x 19, --k 1000

The crowd is bench/synthetic.py's canonical JSONL (what users of `select` most often have; 1M x 19 is about
1.8 GB), written once into DATA (default: a folder in the temp dir, reused by later runs). Then, in this one
process, the real CLI entry `crowdselect select --no-cluster` runs with `--executor local`, and with
`--executor ray` on a local Ray started just before (its start is timed apart and counted in the Ray
total: the user waits for it). Printed: each stage's time from run.json's `timings_s`, the time outside the
stages (the summary's passes, run.json, the report), the totals and the ratio ray / local (target <= 2.0),
and whether the two runs wrote byte-identical selected.jsonl and the same scores.parquet rows.
Absolute times on a shared machine are noise; the ratio is the result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo root: bench.synthetic


def build_crowd(n: int, data: Path) -> tuple[Path, Path]:
    """(crowd.yaml, crowd.jsonl) of n rows in `data`, written once (a partial file never stays)."""
    from bench import synthetic

    data.mkdir(parents=True, exist_ok=True)
    cfg, crowd = data / "crowd.yaml", data / f"crowd{n}.jsonl"
    cfg.write_text(synthetic.crowd_yaml())
    if not crowd.exists():
        t0 = time.perf_counter()
        part = crowd.with_suffix(".part")
        synthetic.write_canonical_jsonl(part, n, seed=1)
        part.rename(crowd)
        print(f"wrote {crowd} ({crowd.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f}s")
    return cfg, crowd


def run_cli(executor: str, cfg: Path, crowd: Path, out: Path, k: int) -> tuple[float, dict]:
    """(wall seconds, run.json) of one `crowdselect select` through the CLI's own entry."""
    from crowdselect.cli import main

    t0 = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # the summary: in out/summary.txt
        rc = main(["select", "--config", str(cfg), "--input", str(crowd), "--out", str(out), "--no-cluster",
                   "--k", str(k), "--executor", executor])
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"select --executor {executor} exited {rc}")
    return wall, json.loads((out / "run.json").read_text())


def same_scores(a: Path, b: Path) -> bool:
    """The two scores.parquet folders hold the same rows, NaN equal to NaN (part files differ in number)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ta, tb = (pq.read_table(folder).sort_by("id") for folder in (a, b))
    if ta.schema != tb.schema or ta.num_rows != tb.num_rows:
        return False
    for name in ta.column_names:
        x, y = ta.column(name), tb.column(name)
        same = (np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True) if pa.types.is_floating(x.type)
                else x.equals(y))
        if not same:
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100K rows, k 1000")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--k", type=int)
    ap.add_argument("--data", type=Path, help="folder for the crowd (kept for later runs)")
    ap.add_argument("--only", choices=["local", "ray"], help="run one executor (no ratio)")
    args = ap.parse_args()
    n = args.rows or (100_000 if args.quick else 1_000_000)
    k = args.k or (1000 if args.quick else 10_000)
    data = args.data or Path(tempfile.gettempdir()) / "crowdselect-bench-executors"
    cfg, crowd = build_crowd(n, data)
    os.environ.setdefault("CROWDSELECT_PROGRESS_S", "60")

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="select-executors-") as tmp:
        for executor in ("local", "ray"):
            if args.only and executor != args.only:
                continue
            start = 0.0
            if executor == "ray":
                from crowdselect.runtime.ray_setup import ensure_ray

                t0 = time.perf_counter()
                ensure_ray(num_cpus=None, temp_dir=os.environ.get("CROWDSELECT_RAY_TMP"))
                start = time.perf_counter() - t0
            wall, run = run_cli(executor, cfg, crowd, Path(tmp) / executor, k)
            results[executor] = {"start": start, "wall": wall, "stages": run["timings_s"]}
        report(results, n, k, crowd)
        if len(results) == 2:
            a, b = Path(tmp) / "local", Path(tmp) / "ray"
            same_sel = (a / "selected.jsonl").read_bytes() == (b / "selected.jsonl").read_bytes()
            same_sc = same_scores(a / "scores.parquet", b / "scores.parquet")
            print(f"  selected.jsonl byte-identical: {same_sel}; scores.parquet same rows: {same_sc}")
            if not (same_sel and same_sc):
                raise SystemExit("the executors disagree")


def report(results: dict[str, dict], n: int, k: int, crowd: Path) -> None:
    print(f"\ncrowdselect select --no-cluster --k {k:,}, {n:,} x 19 canonical JSONL "
          f"({crowd.stat().st_size / 2**30:.2f} GiB), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[1]:.1f} over the last 5 minutes (other work on the machine moves both columns)")
    names = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    execs = list(results)
    print(f"  {'stage':<16}" + "".join(f"{e:>10}" for e in execs))
    rows = [("ray start", {e: r["start"] for e, r in results.items()})]
    rows += [(s, {e: r["stages"].get(s, 0.0) for e, r in results.items()}) for s in names]
    rows.append(("outside stages", {e: r["wall"] - sum(r["stages"].values()) for e, r in results.items()}))
    rows.append(("total", {e: r["start"] + r["wall"] for e, r in results.items()}))
    for label, by in rows:
        print(f"  {label:<16}" + "".join(f"{by[e]:>9.1f}s" for e in execs))
    if len(results) == 2:
        total = {e: r["start"] + r["wall"] for e, r in results.items()}
        print(f"  ratio ray / local = {total['ray'] / total['local']:.2f} (target <= 2.0 at 1M rows); without Ray's start "
              f"{results['ray']['wall'] / results['local']['wall']:.2f}")


if __name__ == "__main__":
    main()
