"""`make test`: the whole suite as two pytest processes side by side, then one exit code.

    python tests/run_streams.py [--junit-dir DIR] [--serial] [PYTEST_ARGS ...]

Part of the suite waits (Ray start-ups, subprocesses, polled jobs) and two streams fill some of that
time; on a 2-core machine they contend for the CPU, so each stream gets its share of the cores as its torch
thread count (`threads_per_stream`). Stream `models` holds the files that load the 0.5B-1.5B models or
run the multi-node cluster (one big model in memory at a time), and the storage emulator files (for balance);
stream `engine` holds every other file, so a
new test file lands there without being listed. Each stream runs its own local Ray cluster (its own temp
dir, $CROWDSELECT_RAY_TMP-<stream>), writes its own log (printed whole when it ends; a heartbeat line per minute meanwhile) and, with
--junit-dir, its own JUnit report DIR/<stream>.xml. `--serial` runs one pytest over everything instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MODELS = [  # the heavy files: real 0.5B-1.5B models, vLLM, the multi-node cluster, eval; and the two storage
    # emulator files (light on memory), so that the streams take about as long (CI of 2026-12-02: `engine`,
    # with the training runs, the select faults and the experiment, was otherwise ~5 minutes longer)
    "cluster/test_multinode.py",
    "e2e/test_quickstart.py",
    "e2e/test_eval.py",
    "e2e/test_storage_s3.py",
    "e2e/test_storage_gcs.py",
    "stage/test_packaged_qwen.py",
    "stage/test_generate_vllm.py",
    "stage/test_reward_vllm.py",
    "stage/test_judge.py",
]
HEARTBEAT_S = 60


def streams() -> dict[str, list[str]]:
    heavy = [str(TESTS / f) for f in MODELS]
    rest = sorted(str(p) for p in TESTS.rglob("test_*.py") if str(p) not in heavy)
    return {"models": heavy, "engine": rest}


def run(args: argparse.Namespace, extra: list[str]) -> int:
    py = [sys.executable, "-m", "pytest"]
    if args.serial:
        junit = [f"--junitxml={Path(args.junit_dir) / 'all.xml'}"] if args.junit_dir else []
        return subprocess.call([*py, str(TESTS), *junit, *extra], cwd=ROOT)
    logs = Path(tempfile.mkdtemp(prefix="crowdselect-tests-"))
    procs, groups = {}, streams()
    threads = threads_per_stream(len(groups))
    for name, files in groups.items():
        junit = [f"--junitxml={Path(args.junit_dir) / f'{name}.xml'}"] if args.junit_dir else []
        env = {**os.environ, **threads,
               "CROWDSELECT_RAY_TMP": f"{os.environ.get('CROWDSELECT_RAY_TMP', '/tmp/rcs')}-{name}"}
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed when the stream ends
        procs[name] = (subprocess.Popen([*py, *files, *junit, *extra], cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT), log)
    print(f"[tests] {len(procs)} streams ({', '.join(procs)}), logs in {logs}", flush=True)
    codes, t0, beat = {}, time.time(), time.time()
    while len(codes) < len(procs):
        time.sleep(2)
        for name, (proc, log) in procs.items():
            if name not in codes and proc.poll() is not None:
                codes[name] = proc.returncode
                log.close()
                print(f"\n[tests] ===== stream {name}: exit {proc.returncode} after {time.time() - t0:.0f}s =====")
                print((logs / f"{name}.log").read_text(errors="replace"), flush=True)
        if time.time() - beat >= HEARTBEAT_S and len(codes) < len(procs):
            beat = time.time()
            running = [f"{n}: {_last_line(logs / f'{n}.log')}" for n in procs if n not in codes]
            print(f"[tests] {time.time() - t0:.0f}s; " + "; ".join(running), flush=True)
    return next((c for c in codes.values() if c), 0)


def threads_per_stream(n: int) -> dict[str, str]:
    """Each stream's share of the cores as its OpenMP/MKL thread count (torch in pytest and in every Ray worker,
    which keeps an OMP_NUM_THREADS it finds set). Unset, Ray gives an actor one thread per CPU it asked for, and
    two streams of 2-thread torch on 2 cores wait on each other's descheduled threads: a greedy decode loop in
    two such processes side by side took 152 s each, against 35 s each with 1 thread (2026-12-01)."""
    share = str(max(1, (os.cpu_count() or 1) // n))
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", share),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", share)}


def _last_line(path: Path) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1][:100] if lines else "starting"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit-dir", help="write one JUnit report per stream here")
    ap.add_argument("--serial", action="store_true", help="one pytest over the whole suite")
    args, extra = ap.parse_known_args()
    return run(args, extra)


if __name__ == "__main__":
    sys.exit(main())
