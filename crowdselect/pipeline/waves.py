"""`crowdselect run`'s model stages side by side: the plan of `crowdselect.pipeline.plan`, run on driver threads.

Each generator and each reward model is one stage (`pipeline.stages.generate` / `reward`): one Ray Data
pipeline over its pending shards, collected into its own stage folder. The scheduler starts the stages that
fit the cluster together (`schedule: packed`, the default; `sequential` runs them one by one in config
order); each runs in its own thread of the driver, where Ray Data gives each pipeline its own executor. A
reward stage (packed) starts once every generator has started and it fits, and scores each shard as soon as
every generator has written it (`answers_source`); one after another it starts once they have ended. Under
an autoscaler the driver asks ahead for the running stages' and the next wave's replicas
(`capacity.request_ahead`), so the next wave's nodes boot while the current one works; the request is
withdrawn when the model stages end.

Why a thread per stage and not one Dataset (a union of the stages' pipelines): each stage keeps its own
pipeline, shard collection and manifest, exactly as when it runs alone, so resume stays per stage and shard
and a stage writes the same bytes whatever runs beside it (an answer or a reward depends only on its row).
One union would carry every stage's rows through one stream and one executor, and the driver would have to
split them by stage again. A stage that fails stops new stages from starting; the ones running finish
(their shards are kept for the rerun) and the first error is raised.

Every stage, model or not, is recorded for run.json's `stages`: name, wave, start and end (epoch seconds),
GPUs reserved, GPU-seconds reserved (GPUs x wall time) and busy (GPUs per replica x the seconds its replicas
spent on batches, `replica_seconds_busy`, read off Ray Data's stats: `stages.batch_seconds`; None where not
measured: select's embedder and training).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crowdselect.core import log, storage
from crowdselect.pipeline.answers_source import clear_stop, new_stop_flag, set_stop
from crowdselect.pipeline.config import RunConfig
from crowdselect.pipeline.estimate import PROMPT_TOKENS, StageWork, answer_tokens
from crowdselect.pipeline.plan import TASK_CPUS, Scheduler, StageRequest, pack_waves, simulate
from crowdselect.pipeline.stages import Pool, generate, generator_store, reward
from crowdselect.pipeline.store import MANIFEST, StageStore
from crowdselect.runtime.capacity import request_ahead
from crowdselect.runtime.resources import StageResources, for_generator, for_pool


@dataclass
class StageRecord:
    name: str
    start: float
    end: float
    gpus: float = 0.0  # reserved for the whole stage (replicas x GPUs per replica)
    gpus_per_replica: float = 0.0
    busy_s: float | None = None  # seconds the replicas spent on batches (summed over replicas); None: not measured
    wave: int | None = None

    def to_json(self) -> dict[str, Any]:
        reserved = self.gpus * (self.end - self.start)
        busy = None if self.busy_s is None else min(self.busy_s * self.gpus_per_replica, reserved)
        if not self.gpus:
            busy = 0.0
        return {"name": self.name, "wave": self.wave, "start": round(self.start, 3), "end": round(self.end, 3),
                "seconds": round(self.end - self.start, 3), "gpus": self.gpus,
                "gpu_seconds_reserved": round(reserved, 3), "gpu_seconds_busy": None if busy is None else round(busy, 3),
                "replica_seconds_busy": None if self.busy_s is None else round(self.busy_s, 3)}


class StageClock:
    """Times stages into `times` (log lines, run.json `seconds`) and `records` (run.json `stages`)."""

    def __init__(self, times: dict[str, float]):
        self.times = times
        self.records: list[StageRecord] = []

    def run(self, name: str, fn: Callable, *args, gpus: float = 0.0, gpus_per_replica: float | None = None,
            wave: int | None = None) -> Any:
        """`fn(*args)`, or with `gpus_per_replica` given `fn(*args, meter=...)` (a model stage reporting the
        seconds its replicas were busy). Other stages that reserve GPUs (select's embedder, training) are not
        metered: their busy GPU-seconds are None."""
        meter: dict[str, float | None] = {"busy_s": 0.0}
        start = time.time()
        with log.stage(name.replace(":", " "), self.times):
            result = fn(*args) if gpus_per_replica is None else fn(*args, meter=meter)
        busy = None if gpus_per_replica is None else meter["busy_s"]
        self.records.append(StageRecord(name, start, time.time(), gpus, gpus_per_replica or 0.0, busy, wave))
        return result

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in sorted(self.records, key=lambda r: (r.start, r.name))]


def model_resources(cfg: RunConfig) -> dict[str, StageResources]:
    """Each model stage's resources (`runtime.resources`), keyed as run.json's `resources`."""
    out = {f"generate:{g.name}": for_generator(g) for g in cfg.generators}
    out.update({f"reward:{r.name}": for_pool(r.resources) for r in cfg.rewards})
    return out


def stage_requests(cfg: RunConfig) -> list[StageRequest]:
    """One request per model stage, in config order; the reward stages consume every generator's shards:
    packed, they stream (start once every generator has started, where they fit), else they come after."""
    gens = tuple(f"generate:{g.name}" for g in cfg.generators)
    return [StageRequest(name, res.max_replicas, res.bundle(), () if name in gens else gens,
                         streams=name not in gens and cfg.schedule == "packed")
            for name, res in model_resources(cfg).items()]


def run_model_stages(cfg: RunConfig, pool: Pool, clock: StageClock, nodes: list[dict[str, float]]
                     ) -> tuple[dict[str, StageStore], dict[str, StageStore]]:
    """Run every generator and reward stage as the scheduler allows; returns their stores in config order."""
    requests = stage_requests(cfg)
    resources = model_resources(cfg)
    sched = Scheduler(requests, nodes, side_by_side=cfg.schedule == "packed")
    wave_of = {n: i + 1 for i, wave in enumerate(sched.waves) for n in wave}
    log.say(f"stages ({cfg.schedule}): " + "; ".join(f"wave {i + 1}: {', '.join(w)}" for i, w in enumerate(sched.waves)))
    stores: dict[str, StageStore] = {}
    failures: list[BaseException] = []
    ended: queue.Queue[str] = queue.Queue()
    feed = Feed(new_stop_flag(), lambda: any(n.startswith("generate:") for n in sched.running))

    def work(name: str) -> None:
        res = resources[name]
        try:
            stores[name] = clock.run(name, _stage_fn(cfg, pool, name, feed), gpus=res.num_gpus * res.max_replicas,
                                     gpus_per_replica=res.num_gpus, wave=wave_of[name])
        except BaseException as e:  # raised on the main thread once the running stages have ended
            failures.append(e)
            if name.startswith("generate:"):
                set_stop(feed.stop)  # a reward stage waiting for this generator's shards ends too
        finally:
            ended.put(name)

    autoscaled = request_ahead(sched.ahead())
    try:
        while not sched.finished:
            if not failures:
                for name in sched.next_stages():
                    threading.Thread(target=work, args=(name,), name=name, daemon=True).start()
                if autoscaled:
                    request_ahead(sched.ahead())
            if not sched.running:
                break
            sched.finish(ended.get())
    finally:
        clear_stop(feed.stop)
        if autoscaled:
            request_ahead([])  # the request holds until withdrawn: let the autoscaler scale the model nodes down
    if failures:
        raise failures[0]
    return ({g.name: stores[f"generate:{g.name}"] for g in cfg.generators},
            {r.name: stores[f"reward:{r.name}"] for r in cfg.rewards})


@dataclass
class Feed:
    """What a reward stage fed by running generators needs: the run's stop flag (`answers_source`), set when a
    generator fails, and whether any generator still runs."""

    stop: str
    generating: Callable[[], bool]


def _stage_fn(cfg: RunConfig, pool: Pool, name: str, feed: Feed) -> Callable:
    kind, _, stage = name.partition(":")
    if kind == "generate":
        spec = next(g for g in cfg.generators if g.name == stage)
        return lambda meter: generate(cfg, spec, pool, cfg.out, meter)
    spec = next(r for r in cfg.rewards if r.name == stage)
    gens = {g.name: generator_store(g, pool, cfg.out) for g in cfg.generators}  # their files, as they are written
    return lambda meter: reward(cfg, spec, pool, gens, cfg.out, meter, stop=feed.stop, upstream=feed.generating)


def stage_work(cfg: RunConfig, rows: int) -> dict[str, StageWork]:
    """What each model stage must do for a pool of `rows` instructions (`pipeline.estimate`)."""
    resources = model_resources(cfg)
    out = {}
    for g in cfg.generators:
        res, rpm = resources[f"generate:{g.name}"], g.resources.requests_per_minute
        out[f"generate:{g.name}"] = StageWork("generate", g.backend, rows, answer_tokens(g.max_tokens),
                                              res.max_replicas, res.num_gpus, g.size_b, rpm / 60 if rpm else None)
    scored = PROMPT_TOKENS + sum(answer_tokens(g.max_tokens) for g in cfg.generators) / len(cfg.generators)
    for r in cfg.rewards:
        res = resources[f"reward:{r.name}"]
        out[f"reward:{r.name}"] = StageWork("reward", r.backend, rows * len(cfg.generators), scored,
                                            res.max_replicas, res.num_gpus)
    return out


def finished_stages(cfg: RunConfig) -> set[str]:
    """Model stages whose folder under DIR says complete (a rerun skips them)."""
    done = set()
    for name in model_resources(cfg):
        kind, _, stage = name.partition(":")
        path = storage.join(cfg.out, kind, stage, MANIFEST)
        if storage.exists(path) and json.loads(storage.read_text(path)).get("complete"):
            done.add(name)
    return done


def plan_text(cfg: RunConfig, rows: int, nodes: list[dict[str, float]]) -> str:
    """`crowdselect run --plan`: the waves, each stage's resources and estimated times, packed and sequential."""
    requests = stage_requests(cfg)
    work = stage_work(cfg, rows)
    done = finished_stages(cfg)
    seconds = {n: 0.0 if n in done else w.seconds() for n, w in work.items()}
    packed = cfg.schedule == "packed"
    timeline = simulate(requests, nodes, seconds, side_by_side=packed)
    waves = pack_waves(requests, nodes) if packed else [[r.name] for r in requests]
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
    lines = [f"plan ({cfg.schedule}): {len(requests)} model stages in {len(waves)} wave(s) for {rows:,} instructions "
             f"on {len(nodes)} node(s), CPU {total['CPU']:g}, GPU {total['GPU']:g} ({TASK_CPUS:g} CPU kept for "
             "Ray Data's tasks)"]
    by_name = {r.name: r for r in requests}
    for i, wave in enumerate(waves):
        lines.append(f"wave {i + 1}:")
        for name in wave:
            r, (start, end) = by_name[name], timeline[name]
            bundle = ", ".join(f"{k} {v:g}" for k, v in r.bundle.items())
            when = "done, skipped" if name in done else f"est. {_clock(start)} -> {_clock(end)}"
            lines.append(f"  {name:<32} {r.replicas} x {{{bundle}}}  {when}")
    sequential = sum(seconds.values())
    end = max((e for _, e in timeline.values()), default=0.0)
    lines.append(f"estimated: {_clock(end)} for the model stages ({_clock(sequential)} one after another); "
                 "ingest, crowd and select not included (time model: docs/scaling.md)")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
