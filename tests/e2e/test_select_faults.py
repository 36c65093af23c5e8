"""Faults `crowdselect select` survives, on a small synthetic crowd with the real MiniLM embedder.

1. The driver (`crowdselect select` in its own process, joined to the test's local Ray as to a cluster) is
   killed (SIGKILL to its process group) while the embed stage runs; its job's actors die with it; rerunning
   the same command into the same folder gives a byte-identical selected.jsonl to an uninterrupted run's.
2. The embedder actor alone is killed (SIGKILL) while the embed stage runs: Ray restarts it, Ray Data redoes
   its batches, and selected.jsonl is byte-identical to the uninterrupted run's.
The uninterrupted reference runs in-process (executor auto, no cluster named), the faulted runs on Ray Data:
the two executors agree byte for byte.

"While the embed stage runs" is checked, not assumed: the driver has said "embed ..." and not yet
"embed done", and the embedder actor has its model loaded (the MiniLM weights file is mapped into it), so
batches are queued on it when it dies.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from bench import synthetic
from crowdselect.cli import main

pytestmark = pytest.mark.slow
CROWD = [("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2), ("b-9b", "b", 9), ("c-3b", "c", 3)]
N_ROWS = 300  # ~19 embed batches of 16 rows: a kill lands with work still queued
ARGS = ["--k", "24", "--clusters", "4"]
EMBEDDER = "pkg:all-minilm-l6-v2"  # the default embedder


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    rows = synthetic.canonical_rows(synthetic.sharegpt_instructions(N_ROWS), CROWD, seed=11)
    synthetic.write_jsonl(d / "crowd.jsonl", rows)
    (d / "crowd.yaml").write_text(synthetic.crowd_yaml(CROWD) + "embedder: {resources: {batch_size: 4}}\n")
    return d


def select_args(pool_dir: Path, out: Path) -> list[str]:
    return ["select", "--config", str(pool_dir / "crowd.yaml"), "--input", str(pool_dir / "crowd.jsonl"),
            "--out", str(out), *ARGS]


@pytest.fixture(scope="module")
def reference(ray_local, pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults_ref")
    assert main(select_args(pool, out)) == 0
    return (out / "selected.jsonl").read_bytes()


def embedder_processes(root: psutil.Process, old: frozenset = frozenset()) -> list[psutil.Process]:
    """The embedder actor processes among `root`'s descendants (Ray names them MapWorker(...Embedder)),
    leaving out the pids in `old` (an earlier run's actor that has not exited yet)."""
    found = []
    for proc in root.children(recursive=True):
        if proc.pid in old:
            continue
        try:
            if "Embedder" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def model_loaded(proc: psutil.Process) -> bool:
    """The embedder's weights are mapped into the process: its constructor has loaded the model."""
    from crowdselect.runtime.models import resolve_model

    folder = os.path.realpath(resolve_model(EMBEDDER))  # maps show real paths (.venv may be a link)
    try:
        return any(os.path.realpath(m.path).startswith(folder) for m in proc.memory_maps())
    except psutil.Error:
        return False


def test_killed_driver_mid_embed_reruns_to_the_same_selection(ray_local, pool, reference, tmp_path):
    out, err = tmp_path / "o", tmp_path / "stderr.txt"
    # The driver joins the running local Ray (no second cluster to start on a busy host); the embedder actor
    # it asks for is then a worker of this process's raylet.
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    old = frozenset(p.pid for p in embedder_processes(psutil.Process()))
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "crowdselect.cli", *select_args(pool, out)], env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        root, deadline = psutil.Process(), time.time() + 900
        while True:
            text = err.read_text()
            assert "embed done" not in text, "the embed stage ended before the driver could be killed"
            assert proc.poll() is None and time.time() < deadline, f"no embed stage to kill:\n{text[-2000:]}"
            if "[crowdselect] embed ..." in text and any(map(model_loaded, embedder_processes(root, old))):
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "embed done" not in err.read_text() and not (out / "selected.jsonl").exists()

    assert main(select_args(pool, out)) == 0  # the same command, into the same folder
    assert (out / "selected.jsonl").read_bytes() == reference


def test_killed_embedder_actor_is_redone_to_the_same_selection(ray_local, pool, reference, tmp_path,
                                                               monkeypatch):
    log = Tee(sys.stderr)
    monkeypatch.setattr(sys, "stderr", log)  # the driver's stage lines, readable while it runs
    killed: list[tuple[int, bool]] = []
    stop = threading.Event()

    me = psutil.Process()
    old = frozenset(p.pid for p in embedder_processes(me))

    def killer():
        while not stop.is_set() and not killed:
            if "[crowdselect] embed ..." in log.text():
                for p in embedder_processes(me, old):
                    if model_loaded(p):
                        mid_stage = "embed done" not in log.text()
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append((p.pid, mid_stage))
                        return
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        assert main([*select_args(pool, tmp_path / "o"), "--executor", "ray"]) == 0  # actors: Ray Data
    finally:
        stop.set()
        thread.join(10)
    assert killed, "the embedder actor was never seen running"
    assert killed[0][1], "the actor was killed after the embed stage had ended"
    assert (tmp_path / "o" / "selected.jsonl").read_bytes() == reference


class Tee:
    """A text stream that writes through to another and keeps a copy (thread-safe enough: append only)."""

    def __init__(self, inner):
        self.inner, self.parts = inner, []

    def write(self, s: str) -> int:
        self.parts.append(s)
        return self.inner.write(s)

    def flush(self) -> None:
        self.inner.flush()

    def text(self) -> str:
        return "".join(self.parts)

    def __getattr__(self, name):
        return getattr(self.inner, name)
