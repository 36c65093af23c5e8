"""Start or join Ray: the same command works on a laptop and under `ray job submit`.

Order: an explicit address from config, else `RAY_ADDRESS` (set by `ray job submit` and by users), else a
new local Ray with a short temp dir. The process-group and cluster details live here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

from crowdselect.core.config import ConfigError

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 5.0  # one TCP connect to a cluster's GCS address before ray.init


@dataclass
class RayConfig:
    address: str | None = None  # None: RAY_ADDRESS or a job's cluster if set, else a local Ray
    num_cpus: int | None = None  # for a local Ray only
    temp_dir: str | None = None

    def validate(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"num_cpus: must be >= 1, got {self.num_cpus}")


class RayStartError(RuntimeError):
    """Ray could not start or be joined (after one retry); the message is one line for the user."""


def ensure_ray(address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None) -> str:
    """Initialise Ray once per process; returns "local", the address joined, or "existing".

    A start-up failure (seen under load: "The current node timed out during startup") is retried once,
    then raised as RayStartError with a one-line message (the CLI prints it and exits 3).
    """
    import ray

    from crowdselect.core.log import say

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        return "existing"
    for attempt in (1, 2):
        try:
            return _init(address, num_cpus, temp_dir)
        except Exception as e:  # Ray raises bare Exception/RuntimeError/ConnectionError on start-up
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            if ray.is_initialized():
                ray.shutdown()
            if attempt == 2:
                target = _target(address)
                where = f"join Ray at {target}" if target else "start a local Ray"
                raise RayStartError(f"could not {where} (tried twice): {reason}") from None
            say(f"Ray did not start ({reason}); retrying once")
    raise AssertionError("unreachable")


def _target(address: str | None) -> str | None:
    return address or os.environ.get("RAY_ADDRESS")


def _init(address: str | None, num_cpus: int | None, temp_dir: str | None) -> str:
    import ray

    from crowdselect.core.log import ray_logging_level

    target = _target(address)
    if target:
        probe_address(target)
        runtime_env = None if _in_submitted_job() else {"env_vars": _forwarded_env()}
        ray.init(address=target, runtime_env=runtime_env, log_to_driver=True,
                 logging_level=ray_logging_level())
        log.info("joined Ray cluster at %s", target)
        return target
    tmp = temp_dir or os.environ.get("CROWDSELECT_RAY_TMP", "/tmp/rcs")
    # address="local" starts a fresh cluster even when another `ray start` runs on this machine. Its raylet
    # is this process's child, so workers inherit this environment: no runtime env (which would put every
    # worker start through the runtime-env agent).
    ray.init(address="local", num_cpus=num_cpus, _temp_dir=tmp, include_dashboard=False,
             logging_level=ray_logging_level())
    return "local"


def probe_address(target: str) -> None:
    """ConnectionError when nothing accepts a TCP connection at a `host:port` (or `ray://host:port`) address.

    ray.init gives an address nobody answers 20 attempts of about 40 s each (Ray 2.60, node.py's GCS client
    loop: 5 s connect, 5 s pubsub, 30 s cluster id), some 14 minutes before it fails; one connect here fails in
    at most PROBE_TIMEOUT_S. Addresses without a port ("auto", "local") are left to Ray.
    """
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {target} ({e.strerror or e})") from None


def _forwarded_env() -> dict[str, str]:
    """Env vars every Ray worker needs to see as the driver does (offline hub, caches). No secrets."""
    keys = ("HF_HUB_OFFLINE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE", "CROWDSELECT_CACHE", "VLLM_CPU_KVCACHE_SPACE",
            "TORCH_EXTENSIONS_DIR", "TOKENIZERS_PARALLELISM", "HF_HOME", "AWS_ENDPOINT_URL",
            "AWS_DEFAULT_REGION", "RAY_DATA_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")
    return {k: os.environ[k] for k in keys if k in os.environ}


def _in_submitted_job() -> bool:
    """True in the driver of a `ray job submit` job. Its runtime env (working_dir, env_vars) already applies
    to every worker and the driver sees the same env; Ray refuses a ray.init runtime env that repeats the
    job's env vars ("Failed to merge the Job's runtime env", seen in tests/test_multinode.py), so the driver
    passes none there."""
    return bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


def configure_data(preserve_order: bool = True) -> None:
    """Ray Data settings for crowdselect drivers: ordered (deterministic) execution, quieter logs.

    In a terminal Ray Data's bars show each operator's rows, rate and ETA; piped (CI, `ray job logs`) they
    are off, because their log form repeats `Total Progress: 0/?` blocks: `crowdselect.core.log.stage`
    prints one line per stage every few seconds instead.
    """
    import ray.data

    from crowdselect.core.log import interactive, quiet_ray_data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = preserve_order
    ctx.print_on_execution_start = False
    if not interactive():
        ctx.enable_progress_bars = False
    quiet_ray_data()


FOOTER_ACTORS = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
FOOTER_FILES_PER_BATCH = 10  # Ray Data's RAY_DATA_PARQUET_FOOTER_BATCH_SIZE default: files per footer task
FOOTER_ACTORS_MAX = 32  # Ray Data's default pool size
_FOOTER_LOCK = threading.Lock()


def read_parquet(paths: list[str], **kwargs):
    """`ray.data.read_parquet(paths, **kwargs)` with its footer-reader pool sized to the file count.

    Ray Data (2.60, datasource V2) reads Parquet footers on a pool of FooterReader actors, 32 by default,
    created for every read_parquet call (once to sample the schema, again when the dataset runs) whatever the
    number of files, and killed when the footers are read. On an idle machine the read ends before most of
    them have a process; on a busy node many do. In the multi-node test (two 2-CPU worker nodes, 2026-12-02)
    the worker nodes started 83 FooterReader processes, 188 worker processes in all, for 3 jobs of 6 rows;
    with the pool sized, 6 and 33 for 2 jobs. One actor per footer batch of 10 files does the same work; a
    user's own setting of the variable wins.
    """
    import ray.data

    with _FOOTER_LOCK:  # stages side by side build their reads from several driver threads
        if FOOTER_ACTORS in os.environ:
            return ray.data.read_parquet(paths, **kwargs)
        want = -(-len(paths) // FOOTER_FILES_PER_BATCH)
        os.environ[FOOTER_ACTORS] = str(max(1, min(FOOTER_ACTORS_MAX, want)))
        try:  # the pool size is read when read_parquet builds its file indexer, here in the driver
            return ray.data.read_parquet(paths, **kwargs)
        finally:
            del os.environ[FOOTER_ACTORS]
