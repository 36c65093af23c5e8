"""`ray job submit` onto a real multi-node Ray cluster on this machine: one head and two worker nodes.

The nodes are started with `ray start` as on real machines (each its own raylet, object store, worker pool,
temp dir, model cache (CROWDSELECT_CACHE) and process group; one GCS; the head runs the dashboard and the job
server), on free ports. Jobs go in through the `ray job submit` CLI with jobs/runtime_env.yaml, exactly as the
README says, and run jobs/run.py on the quickstart config. The head has no CPUs (as in cluster/*.yaml), so all work
lands on the worker nodes. Two jobs, each with a fault, and each checked on its own:

1. The job is stopped (`ray job stop`) after its first generator finished, then resubmitted with the same
   command: it keeps the finished stage, does the rest and succeeds; its outputs are complete (every pool row
   in every stage exactly once), and its work (stopped + resubmitted job) ran on both workers, none on the head.
2. A worker node is killed (SIGKILL to its raylet and workers) while a generation stage runs on it: the job
   still succeeds, every pool row is in every stage exactly once, and the selection equals run 1's.
These two run their stages one after another (`schedule: sequential`), so that "the first generator
finished, the second not" is a moment the test can wait for. The workers advertise 2 logical GPUs each
(`ray start --num-gpus 2`), and a dry-backend job packs its four 1-GPU generators on them side by side: its
run.json shows them overlapping, two replicas on each worker, and its selection equals the same job's one
after another.
The real-model jobs say CPU explicitly (`gpus_per_replica: 0`, `num_gpus: 0`): on a cluster with GPUs
the model stages would otherwise ask for one each. Run 1's caches are then read: a `pkg:` model is resolved and converted on the worker nodes that load it, never
on the head, as on machines with their own disks (on this one machine every node could read a path in the head's
cache, so only the caches show it). A vLLM stage, which hands one model path to every node, is refused here
before it starts: the workers' caches sit at different paths.
There is no third, uninterrupted job: tests/e2e/test_run_e2e.py shows a resumed `crowdselect run` selects what
an uninterrupted one does, and the two faulted jobs here must agree with each other byte for byte.

Deadlines are a quiet machine's times scaled by the load (`load_factor`), and a job fails as hung only after
minutes without a new log line or output file; the resubmit waits until the stopped job's driver and actors
are gone, so the two jobs never overlap.

The config is examples/quickstart.yaml made small (6 instructions, 8-token answers, k=3) so the runs
fit CI's time on a 2-core machine; the pool, embedder and code path are the
quickstart's, the crowd and judge are SmolLM2 (the quickstart's 1.5B models do not fit three raylets in 24 GB).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from crowdselect.core import columns as C

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT = 900  # seconds per job at most on a quiet machine (scaled by load_factor)
STALL_S = 300  # seconds without any new log line or output file before a job counts as hung (scaled too)
PROGRESS_EVERY_S = 10  # how often a waiting test reads the job's whole log for the hang check: each read is an
# HTTP round trip through the dashboard that grows with the log, and the job logs a line every 10 s anyway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """`ray start --block` processes, one per node, each in its own process group (so a node can be killed
    whole, and only what this test started is ever signalled)."""

    def __init__(self, tmp: str, caches: Path):
        self.tmp = tmp
        self.caches = caches
        self.env = {**os.environ, "RAY_TMPDIR": tmp,  # Ray's "current cluster" file: here, not /tmp/ray
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # python = venv
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: dict[str, subprocess.Popen] = {}
        self.args: dict[str, list[str]] = {}
        self.retried: set[str] = set()

    def _start(self, name: str, args: list[str]) -> None:
        self.args[name] = args
        cmd = ["ray", "start", "--block", "--node-name", name, "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(free_port()), *args]
        env = {**self.env, "CROWDSELECT_CACHE": str(self.cache(name))}  # its own disk: models converted there
        self.nodes[name] = subprocess.Popen(cmd, env=env, start_new_session=True,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cache(self, name: str) -> Path:
        """The node's own model cache (`pkg:` models are converted into it)."""
        return self.caches / name

    def start_head(self) -> None:
        self._start("head", ["--head", "--port", str(self.gcs_port), "--num-cpus", "0", "--temp-dir", self.tmp,
                             "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port",
                             str(free_port()), "--object-store-memory", str(200 * 1024**2)])

    def add_worker(self, name: str) -> None:
        # Its own temp dir, as on its own machine: nodes sharing one would unpack the job's working_dir into
        # the same folder, each replacing it under the others' feet.
        self._start(name, ["--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", "2", "--num-gpus", "2",
                           "--temp-dir", f"{self.tmp}_{name}", "--object-store-memory", str(200 * 1024**2)])

    def restart_failed_starts(self) -> None:
        """`ray start` gives up when its raylet takes over 30 s to register (a busy host): start such a node
        once more, on the same ports."""
        for name, proc in list(self.nodes.items()):
            if proc.poll() is not None and name not in self.retried:
                self.retried.add(name)
                _signal_group(proc, signal.SIGKILL)  # whatever the failed start left in its process group
                self._start(name, self.args[name])

    def alive(self) -> dict[str, str]:
        """node name -> node id of the nodes the GCS sees alive."""
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
        return {n.node_name: n.node_id for n in nodes}

    def wait_nodes(self, names: set[str], timeout: float = 180) -> dict[str, str]:
        timeout *= load_factor()
        deadline, seen = time.time() + timeout, None
        while True:
            try:
                seen = self.alive()
                if names <= set(seen):
                    return seen
            except Exception as e:  # the state API can time out while the head is busy
                seen = e
            self.restart_failed_starts()
            if time.time() > deadline:
                exits = {n: p.poll() for n, p in self.nodes.items()}
                raise AssertionError(f"nodes {sorted(names)} not all up after {timeout}s: {seen!r}, exits {exits}")
            time.sleep(1)

    def kill(self, name: str) -> None:
        """The node dies at once: SIGKILL to its whole process group (raylet, object store, workers)."""
        proc = self.nodes.pop(name)
        _signal_group(proc, signal.SIGKILL)
        proc.wait(30)

    def shutdown(self) -> None:
        """SIGTERM every node, give them 5 s together (a node drains for up to 30 s; this cluster need not),
        then SIGKILL what is left."""
        for proc in self.nodes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.time() + 5
        for name, proc in list(self.nodes.items()):
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(30)
            self.nodes.pop(name)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process group this test started for one node (its leader's pid is the group id)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass  # the node already ended


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head (0 CPUs, dashboard + job server) and two worker nodes of 2 CPUs and 2 logical GPUs, each with an
    empty model cache."""
    tmp = os.environ.get("CROWDSELECT_RAY_TMP", "/tmp/rcs") + "_mn"
    os.makedirs(os.path.join(tmp, "ray"), exist_ok=True)
    c = LocalCluster(tmp, tmp_path_factory.mktemp("node_caches"))
    try:
        c.start_head()
        client = _wait_for_job_server(c)
        c.add_worker("worker-1")
        c.add_worker("worker-2")
        c.wait_nodes({"head", "worker-1", "worker-2"})
        yield {"cluster": c, "address": c.address, "client": client}
    finally:
        c.shutdown()


def _wait_for_job_server(c: LocalCluster, timeout: float = 180):
    """The job server answers once the head's dashboard and its agent are up (slow on a busy host)."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + timeout * load_factor()
    while True:
        try:
            client = JobSubmissionClient(c.address)
            client.list_jobs()
            return client
        except Exception:
            if time.time() > deadline:
                raise
            c.restart_failed_starts()
            time.sleep(1)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """examples/quickstart.yaml, small: same pool file, embedder and code path; SmolLM2 crowd and judge."""
    cfg = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    cfg["pool"]["path"] = str(ROOT / cfg["pool"]["path"])
    cfg["pool"].update(limit=6, shard_size=2)
    # the quickstart's 1.5B models need ~6 GB each in fp32: three raylets on one 24 GB machine cannot hold
    # them, so the crowd here is SmolLM2 in two roles (two "sizes" of one family) and it judges itself
    smol = "pkg:smollm2-135m-instruct"
    cfg["generators"] = [
        {"name": "smol-a", "family": "smol", "size_b": 0.1, "model": smol, "backend": "hf"},
        {"name": "smol-b", "family": "smol", "size_b": 0.2, "model": smol, "backend": "hf",
         "sampling": {"temperature": 0.7, "seed": 1}},
    ]
    for g in cfg["generators"]:  # one batch per shard: shards finish one by one; CPU, beside the logical GPUs
        g.update(max_tokens=8, resources={"batch_size": 2, "gpus_per_replica": 0})
    cfg["rewards"] = [{"name": "judge", "model": smol, "kind": "judge", "backend": "hf", "primary": True,
                       "max_length": 256, "resources": {"num_gpus": 0}}]
    cfg["embedder"].setdefault("resources", {})["num_gpus"] = 0
    cfg["selection"].update(k=3, clusters=2)
    cfg["selection"].setdefault("kmeans", {})["n_init"] = 4
    cfg["progress"] = False
    cfg["schedule"] = "sequential"
    path = tmp_path_factory.mktemp("mn_config") / "quickstart_small.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def submit(cluster, config: Path, out: Path, submission_id: str, *overrides: str) -> str:
    """The README's submit command, run as a user would (the CLI, from the repository root)."""
    cmd = ["ray", "job", "submit", "--address", cluster["address"], "--runtime-env", "jobs/runtime_env.yaml",
           "--submission-id", submission_id, "--no-wait", "--", "python", "jobs/run.py", str(config),
           "--out", str(out), *overrides]
    done = subprocess.run(cmd, cwd=ROOT, env=cluster["cluster"].env, capture_output=True, text=True,
                          timeout=180 * load_factor())
    assert done.returncode == 0, done.stdout + done.stderr
    return submission_id


def load_factor() -> float:
    """How much slower than a quiet machine this one runs now (1-min load per core), between 1 and 8: the
    deadlines below are a quiet machine's times this much longer, so a loaded CI host waits, not fails."""
    return min(8.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


def progress(cluster, job_id: str, out: Path | None) -> tuple:
    """Something that changes while the job works: its log's length and the files (and sizes) it wrote."""
    try:
        size = len(logs(cluster, job_id))
    except Exception:  # the job server can time out while the host is busy; not progress, not a failure
        size = -1
    files = () if out is None or not out.exists() else tuple(
        sorted((str(p), p.stat().st_size) for p in out.rglob("*") if p.is_file()))
    return size, files


def wait_status(cluster, job_id: str, until=None, out: Path | None = None, stall: float = STALL_S) -> str:
    """Poll the job (and `until()`, if given) until the job ends or `until()` is true; returns the status.

    Fails when the job makes no progress (log and output files unchanged) for `stall` seconds, or runs past
    JOB_TIMEOUT in all; both scaled by the load while waiting (`load_factor`), so a busy host is not a hang."""
    from ray.job_submission import JobStatus

    start = last_change = time.time()
    seen, status, checked = None, None, 0.0
    while True:
        status = cluster["client"].get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status)
        if until is not None and until():
            return str(status)
        now, factor = time.time(), load_factor()
        if now - checked >= PROGRESS_EVERY_S:
            checked = now
            if (state := progress(cluster, job_id, out)) != seen:
                seen, last_change = state, now
        if now - last_change > stall * factor or now - start > JOB_TIMEOUT * factor:
            raise AssertionError(f"job {job_id} still {status} after {now - start:.0f}s ({now - last_change:.0f}s "
                                 f"without progress, load x{factor:.1f}):\n{logs(cluster, job_id)[-3000:]}")
        time.sleep(1)


def wait_job_gone(cluster, job_id: str, stall: float = STALL_S) -> None:
    """After STOPPED: the job's driver process has exited and every actor of the job is dead, so nothing of
    the old job still holds the workers' CPUs or writes under its output folder when the next job starts.

    Detached actors are not waited for: they outlive their job by design. Ray Data starts its 0-CPU bookkeeping
    actors (_StatsActor, ActorLocationTracker, _AutoscalingCoordinatorActor) detached, under the first job that
    uses Ray Data on the cluster, and every later job shares them by name."""
    import psutil
    from ray.util.state import list_actors

    info = cluster["client"].get_job_info(job_id)
    pid = info.driver_info.pid if info.driver_info else None
    deadline = time.time() + stall * load_factor()
    while True:
        driver_alive = pid is not None and psutil.pid_exists(int(pid)) and \
            psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
        try:
            actors = list_actors(address=cluster["address"], raise_on_missing_output=False, detail=True,
                                 filters=[("job_id", "=", info.job_id), ("state", "!=", "DEAD")])
            live = [a.class_name for a in actors if not a.is_detached]
        except Exception as e:  # the state API can time out while the head is busy
            live = [repr(e)]
        if not driver_alive and not live:
            return
        if time.time() > deadline:
            raise AssertionError(f"job {job_id} stopped but not gone: driver alive {driver_alive}, actors {live}")
        time.sleep(1)


def logs(cluster, job_id: str) -> str:
    return cluster["client"].get_job_logs(job_id)


def manifest(out: Path, stage: str) -> dict:
    path = out / stage / "_manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def selected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "select" / "selected.jsonl").read_text().splitlines()]


def check_complete_and_unique(out: Path) -> None:
    """Every pool row is in every stage exactly once; nothing lost, nothing duplicated."""
    ingest = manifest(out, "ingest")
    pool = {s: pq.read_table(out / "ingest" / f"{s}.parquet").column(C.ID).to_pylist() for s in ingest["shards"]}
    ids = [i for rows in pool.values() for i in rows]
    assert len(ids) == len(set(ids)) == 6
    run = json.loads((out / "run.json").read_text())
    gens = [g["name"] for g in run["generators"]]
    for g in gens:
        m = manifest(out, f"generate/{g}")
        assert m["complete"] and set(m["shards"]) == set(pool)
        for s, want in pool.items():
            got = pq.read_table(out / "generate" / g / f"{s}.parquet").column(C.ID).to_pylist()
            assert got == want, f"generate/{g}/{s}: {got} != {want}"
    for r in run["rewards"]:
        rows = [row for s in pool for row in pq.read_table(out / "reward" / r["name"] / f"{s}.parquet").to_pylist()]
        keys = [(row[C.ID], row[C.MODEL]) for row in rows]
        assert len(keys) == len(set(keys)) == len(ids) * len(gens), f"reward/{r['name']}"
    assert run["crowd"]["instructions"] + run["crowd"]["excluded"] == len(ids)
    chosen = selected(out)
    assert len(chosen) == 3 and len({row[C.ID] for row in chosen}) == 3


def tasks_of(cluster, submission_id: str) -> list:
    from ray.util.state import list_tasks

    job_id = cluster["client"].get_job_info(submission_id).job_id
    return list_tasks(address=cluster["address"], filters=[("job_id", "=", job_id)], limit=10_000,
                      raise_on_missing_output=False)


@pytest.fixture(scope="module")
def resumed(cluster, config, tmp_path_factory):
    """Run 1: submitted, stopped once its first generator has finished, resubmitted with the same command."""
    out = tmp_path_factory.mktemp("mn_stop") / "run"
    job = submit(cluster, config, out, "crowdselect-stop")
    status = wait_status(cluster, job, until=lambda: manifest(out, "generate/smol-a").get("complete"), out=out)
    assert status == "RUNNING", f"the job ended ({status}) before it could be stopped midway"
    done = subprocess.run(["ray", "job", "stop", "--address", cluster["address"], job], cwd=ROOT,
                          env=cluster["cluster"].env, capture_output=True, text=True, timeout=120 * load_factor())
    assert done.returncode == 0, done.stdout + done.stderr
    assert wait_status(cluster, job) == "STOPPED"
    # Resubmitting while the stopped job's driver or actors live on would race them: they hold the workers'
    # CPUs (the new job's actors wait, then time out on a loaded host) and could still touch out/.
    wait_job_gone(cluster, job)
    selected_before = (out / "select" / "selected.jsonl").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "generate" / "smol-a").glob("shard-*.parquet")}

    again = submit(cluster, config, out, "crowdselect-stop-resubmit")
    status = wait_status(cluster, again, out=out)
    assert status == "SUCCEEDED", logs(cluster, again)[-4000:]
    return {"out": out, "jobs": (job, again), "kept": kept, "selected_before": selected_before}


def test_stopped_job_resubmitted_resumes_and_completes(resumed):
    out = resumed["out"]
    assert not resumed["selected_before"], "stopped midway: no selection yet"
    assert len(resumed["kept"]) == 3
    first = out / "generate" / "smol-a"
    assert {p.name: p.stat().st_mtime_ns for p in first.glob("shard-*.parquet")} == resumed["kept"], \
        "finished shards redone"
    check_complete_and_unique(out)


def test_submitted_jobs_run_on_the_worker_nodes(cluster, resumed):
    stopped, again = resumed["jobs"]
    text = logs(cluster, again)
    assert "[crowdselect] select done" in text and "selected:" in text
    tasks = tasks_of(cluster, stopped) + tasks_of(cluster, again)
    # The data plane: read/write tasks and the model actors' batches (Ray Data's 0-CPU bookkeeping actors,
    # e.g. _StatsActor, live on the head by design).
    # The reward stage's reads that wait for the generators' shards ask for no CPU (pipeline/answers_source.py:
    # a sliver deadlocked this cluster), so Ray may place them on the head: they are left out here.
    work = [t for t in tasks if t.node_id and (t.type == "NORMAL_TASK" or "MapWorker" in t.name)
            and "AnswersSource" not in t.name]
    ran_on = {t.node_id for t in work}
    alive = cluster["cluster"].alive()
    assert alive["head"] not in ran_on, "the head has no CPUs: no data work runs there"
    assert ran_on == {alive["worker-1"], alive["worker-2"]}, f"work should use both workers, used {len(ran_on)}"
    assert any("MapWorker" in t.name for t in work) and any(t.type == "NORMAL_TASK" for t in work)


def test_pkg_models_are_resolved_on_the_worker_nodes_that_run_them(cluster, resumed):
    """The crowd and judge are `pkg:smollm2-135m-instruct`. The head runs no model stage (0 CPUs), so a model
    converted into the head's cache was resolved by the job driver, into a path only the head's disk has; on
    machines with their own disks the workers that load the model must resolve (and convert) it themselves."""
    alias = "smollm2-135m-instruct"
    converted = {name for name in ("head", "worker-1", "worker-2")
                 if (cluster["cluster"].cache(name) / "models" / alias / "config.json").is_file()}
    assert "head" not in converted, f"pkg:{alias} was resolved on the driver (converted in {sorted(converted)})"
    assert converted, f"pkg:{alias} was converted on no worker node"


@pytest.fixture(scope="module")
def dry_config(tmp_path_factory) -> Path:
    """examples/rehearsal.yaml on this cluster: four dry generators of one logical GPU each (4 GPUs on 2 nodes),
    a dry judge on one GPU, 12 instructions in 4 shards."""
    cfg = yaml.safe_load((ROOT / "examples" / "rehearsal.yaml").read_text())
    cfg["pool"].update(path=str(ROOT / cfg["pool"]["path"]), limit=12, shard_size=3)
    for g in cfg["generators"]:
        g["resources"] = {"gpus_per_replica": 1, "num_cpus": 0.5, "batch_size": 3}
    cfg["rewards"][0]["resources"] = {"num_gpus": 1, "num_cpus": 0.5}
    cfg.setdefault("embedder", {}).setdefault("resources", {})["num_gpus"] = 0  # a real model: CPU torch here
    cfg["selection"].update(k=3, clusters=2, kmeans={"n_init": 4})
    cfg.update(progress=False, out=None)
    cfg.pop("ray")
    path = tmp_path_factory.mktemp("mn_dry") / "rehearsal_small.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_dry_stages_pack_on_logical_gpus_and_select_as_one_after_another(cluster, dry_config, tmp_path):
    from ray.util.state import list_actors

    packed, sequential = tmp_path / "packed", tmp_path / "sequential"
    job = submit(cluster, dry_config, packed, "crowdselect-dry-packed")
    assert wait_status(cluster, job, out=packed) == "SUCCEEDED", logs(cluster, job)[-4000:]
    again = submit(cluster, dry_config, sequential, "crowdselect-dry-sequential", "schedule=sequential")
    assert wait_status(cluster, again, out=sequential) == "SUCCEEDED", logs(cluster, again)[-4000:]
    assert (packed / "select" / "selected.jsonl").read_bytes() == (sequential / "select" / "selected.jsonl").read_bytes()
    run = json.loads((packed / "run.json").read_text())
    gens = [s for s in run["stages"] if s["name"].startswith("generate:")]
    assert len(gens) == 4 and {s["wave"] for s in gens} == {1} and {s["gpus"] for s in gens} == {1.0}
    assert max(s["start"] for s in gens) < min(s["end"] for s in gens), f"no overlap: {gens}"
    for s in gens:
        assert 0 < s["gpu_seconds_busy"] <= s["gpu_seconds_reserved"]
    seq = sorted((s["start"], s["end"]) for s in json.loads((sequential / "run.json").read_text())["stages"]
                 if s["name"].startswith("generate:"))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(seq, seq[1:], strict=False))
    job_id = cluster["client"].get_job_info(job).job_id  # each worker held two of the four 1-GPU replicas
    actors = list_actors(address=cluster["address"], filters=[("job_id", "=", job_id)], limit=10_000,
                         raise_on_missing_output=False)
    alive = cluster["cluster"].alive()
    per_node = [sum(1 for a in actors if "DryGenerator" in a.class_name and a.node_id == alive[w])
                for w in ("worker-1", "worker-2")]
    assert per_node == [2, 2], per_node


def test_a_vllm_stage_is_refused_when_nodes_would_see_different_model_paths(cluster, resumed):
    """ray.data.llm gives every node one model path; here each worker converted the model into its own cache
    folder, so the path a vLLM stage would get is refused before the stage starts, naming what to change."""
    probe = ("import ray; ray.init(); from crowdselect.runtime.node_models import on_every_node; "
             "on_every_node('pkg:smollm2-135m-instruct', 'generator probe')")
    cmd = ["ray", "job", "submit", "--address", cluster["address"], "--runtime-env", "jobs/runtime_env.yaml",
           "--submission-id", "crowdselect-vllm-paths", "--no-wait", "--", "python", "-c", probe]
    done = subprocess.run(cmd, cwd=ROOT, env=cluster["cluster"].env, capture_output=True, text=True,
                          timeout=180 * load_factor())
    assert done.returncode == 0, done.stdout + done.stderr
    assert wait_status(cluster, "crowdselect-vllm-paths") == "FAILED"
    text = logs(cluster, "crowdselect-vllm-paths")
    assert "generator probe: pkg:smollm2-135m-instruct is converted into a different folder on each node" in text
    assert "same CROWDSELECT_CACHE" in text and str(cluster["cluster"].cache("head")) not in text


def test_killing_a_worker_node_mid_run_loses_and_duplicates_nothing(cluster, config, resumed, tmp_path):
    """Last in this file: it leaves the cluster one worker short."""
    from ray.util.state import list_actors

    out = tmp_path / "run"
    job = submit(cluster, config, out, "crowdselect-kill")
    chosen = []

    def victim_found() -> bool:
        """The worker node running a generation actor of this job, once the second generator is under way."""
        if not manifest(out, "generate/smol-a").get("complete"):
            return False
        job_id = cluster["client"].get_job_info(job).job_id  # the driver's Ray job id, set once it runs
        actors = list_actors(address=cluster["address"], filters=[("job_id", "=", job_id), ("state", "=", "ALIVE")],
                             raise_on_missing_output=False)
        busy = {a.node_id for a in actors if "MapWorker" in a.class_name}
        names = [n for n, nid in cluster["cluster"].alive().items() if nid in busy and n != "head"]
        chosen.extend(names[:1])
        return bool(names)

    status = wait_status(cluster, job, until=victim_found, out=out)
    assert status == "RUNNING", f"the job ended ({status}) before a generation actor was seen"
    name = chosen[-1]
    node_id = cluster["cluster"].alive()[name]
    cluster["cluster"].kill(name)
    status = wait_status(cluster, job, out=out)
    assert status == "SUCCEEDED", logs(cluster, job)[-4000:]
    job_id = cluster["client"].get_job_info(job).job_id
    dead = list_actors(address=cluster["address"], filters=[("job_id", "=", job_id), ("state", "=", "DEAD")],
                       raise_on_missing_output=False)
    assert any(a.node_id == node_id for a in dead), "an actor of the job died with the killed node"
    assert name not in cluster["cluster"].alive()
    check_complete_and_unique(out)
    assert selected(out) == selected(resumed["out"])
