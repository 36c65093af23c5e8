"""The tool's own log lines and progress, one helper for every command (select, run, train).

    log.say("read 300 rows")                 -> "[crowdselect] read 300 rows" on stderr
    with log.stage("embed", rows=300): ...   -> "[crowdselect] embed ..." and "[crowdselect] embed done in 4.1s";
                                                piped, also "[crowdselect] embed: 300 rows, running 20s" every
                                                PROGRESS_EVERY_S seconds while the stage runs
    bar = log.bar(total=300, desc="generate a"); bar.update(16); bar.close()
                                             -> a tqdm bar (rows, rate, ETA) in a terminal; piped, one line
                                                "generate a: 160/300 rows, 12.1 rows/s, ETA 12s" every few seconds
    log.configure(verbose=False)             -> Ray's and Ray Data's INFO lines hidden, tqdm off when piped

"Piped" means stderr is not a terminal (CI, `ray job logs`, `2>&1 | cat`): no carriage-return bars there.
This module knows nothing of CrowdSelect's stages.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crowdselect.core.text import printable

PREFIX = "[crowdselect]"
PROGRESS_EVERY_S = float(os.environ.get("CROWDSELECT_PROGRESS_S", "10"))
VERBOSE = {"on": False}


def interactive() -> bool:
    """True when stderr is a terminal (progress bars), False when piped into a file or a log collector."""
    return sys.stderr.isatty()


def say(msg: str) -> None:
    """One line of the tool's own on stderr, prefixed so it stands out from Ray's and the models' lines;
    control characters (from file names, ids, reasons in `msg`) are shown as escapes (`core.text`)."""
    print(f"{PREFIX} {printable(msg)}", file=sys.stderr, flush=True)


def configure(verbose: bool = False) -> None:
    """Quiet Ray's INFO lines unless `verbose`; piped, turn tqdm bars off here and in Ray workers."""
    VERBOSE["on"] = verbose
    level = logging.INFO if verbose else logging.WARNING
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(level)
    if not interactive():
        os.environ["TQDM_DISABLE"] = "1"  # read by tqdm in this process and (forwarded) in the workers
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def ray_logging_level() -> int:
    """For `ray.init(logging_level=...)`: Ray's own start-up lines only with --verbose."""
    return logging.INFO if VERBOSE["on"] else logging.WARNING


def quiet_ray_data() -> None:
    """After `import ray.data` (which sets its own log levels): its INFO lines only with --verbose."""
    level = logging.INFO if VERBOSE["on"] else logging.WARNING
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(level)
    if not VERBOSE["on"]:  # "Progress bars disabled" when piped: our own lines replace them
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    # the model replicas' `max_restarts` (runtime.resources.REPLICA_RESTARTS) goes through map_batches' extra
    # remote arguments, the way Ray Data 2.60's own actor-pool code documents; 2.60 warns they go in 2.64
    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")


@contextmanager
def stage(name: str, times: dict[str, float] | None = None, rows: int | None = None) -> Iterator[None]:
    """Time a stage into `times[name]`; piped, a heartbeat line every PROGRESS_EVERY_S seconds."""
    say(f"{name} ...")
    t0 = time.perf_counter()
    stop = threading.Event()
    beat = None
    if not interactive():
        what = f"{rows:,} rows, " if rows is not None else ""
        beat = threading.Thread(target=_heartbeat, args=(name, what, t0, stop), daemon=True)
        beat.start()
    try:
        yield
    finally:
        stop.set()
        if beat is not None:
            beat.join()
    took = round(time.perf_counter() - t0, 3)
    if times is not None:
        times[name] = took
    say(f"{name} done in {took:.1f}s")


def _heartbeat(name: str, what: str, t0: float, stop: threading.Event) -> None:
    while not stop.wait(PROGRESS_EVERY_S):
        say(f"{name}: {what}running {time.perf_counter() - t0:.0f}s")


class LineProgress:
    """tqdm's `update/close` interface printing one line every PROGRESS_EVERY_S seconds (for logs)."""

    def __init__(self, total: int | None, desc: str, unit: str = "rows") -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            say(self.line(now))

    def line(self, now: float) -> str:
        rate = self.n / max(now - self.t0, 1e-9)
        if not self.total:
            return f"{self.desc}: {self.n:,} {self.unit}, {rate:.1f} {self.unit}/s"
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
        return f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}, {rate:.1f} {self.unit}/s, ETA {eta_text}"

    def close(self) -> None:
        say(self.line(time.perf_counter()))


def bar(total: int | None, desc: str, unit: str = "rows", enabled: bool = True) -> Any:
    """A progress bar: tqdm in a terminal, LineProgress when piped, a silent one when not `enabled`."""
    from tqdm import tqdm

    if enabled and not interactive():
        return LineProgress(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit.rstrip("s"), disable=not enabled)
