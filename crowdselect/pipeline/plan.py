"""The stage planner: which model stages of `crowdselect run` run side by side, and in what order.

Pure: resource dicts in, stage names and times out; no Ray, no config. A stage asks for `replicas` copies of
one replica's resource bundle (`StageRequest`, built from `crowdselect.runtime.resources`); the cluster is a
list of nodes, each a resource dict (`crowdselect.runtime.capacity`: what Ray reports, or the autoscaler's
largest cluster).

    waves = pack_waves(requests, nodes)        # [["generate:big"], ["generate:a", "generate:b"], ["reward:rm"]]
    sched = Scheduler(requests, nodes)         # at run time: sched.next_stages(), sched.finish(name)
    times = simulate(requests, nodes, seconds) # {name: (start, end)}: the same scheduler on estimated times

- **Fit.** Stages fit side by side when every replica's bundle can be placed on some node at once, first-fit
  decreasing (the largest bundles first, each on the first node with room), as Ray places actors. One CPU
  (`TASK_CPUS`) is always held back for Ray Data's read and map tasks: model actors that took every CPU
  would leave the tasks that feed them none, and every stage would wait for ever.
- **Waves.** Stages are taken largest first (GPUs, then CPUs, then config order); each wave takes every
  stage that still fits beside those already in it, once the stages it runs `after` are in earlier waves
  (a streaming stage: in earlier waves or already in this one).
- **Running.** The scheduler starts the stages of the first wave, and each later stage, in wave order, as
  soon as it fits beside the stages still running (a stage never waits for a whole wave to end). A
  streaming stage starts only once every stage it consumes has started, so it never holds room a producer
  is waiting for: producers never wait on it, and nothing waits in a circle.
- **Nothing waits for ever.** A stage that does not fit even on an empty cluster (more replicas than the
  cluster holds; an accelerator type no node has yet) runs alone once nothing else runs: Ray then starts the
  replicas it can place, or the autoscaler adds nodes, as it does for one stage at a time. Every stage is
  started in finite time: the list of stages is finite and each running stage ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TASK_CPUS = 1.0  # held back on every plan for Ray Data's read and map tasks
EPS = 1e-9


@dataclass(frozen=True)
class StageRequest:
    """One stage's demand: `replicas` actors, each asking `bundle` (e.g. {"CPU": 1, "GPU": 2}); it starts only
    after the stages named in `after` have ended, or with `streams` once they have all started (it consumes
    their output shard by shard as it comes: a reward model beside its generators)."""

    name: str
    replicas: int
    bundle: Mapping[str, float]
    after: tuple[str, ...] = ()
    streams: bool = False

    def total(self) -> dict[str, float]:
        """The whole stage's demand: {"CPU": replicas * cpu, "GPU": replicas * gpu, ...}.

        >>> StageRequest("s", 4, {"CPU": 1, "GPU": 2}).total()
        {'CPU': 4.0, 'GPU': 8.0}
        """
        return {k: float(v) * self.replicas for k, v in self.bundle.items()}


def size_key(r: StageRequest) -> tuple[float, float]:
    """Largest first: more GPUs, then more CPUs."""
    t = r.total()
    return -t.get("GPU", 0.0), -t.get("CPU", 0.0)


def place(bundles: Sequence[Mapping[str, float]], nodes: Sequence[Mapping[str, float]]) -> bool:
    """Whether every bundle finds a node with room, first-fit decreasing (GPU, then CPU, then the rest).

    >>> place([{"GPU": 4}, {"GPU": 4}], [{"GPU": 8}])
    True
    >>> place([{"GPU": 6}, {"GPU": 4}], [{"GPU": 8}, {"GPU": 2}])
    False
    """
    free = [dict(n) for n in nodes]
    order = sorted(bundles, key=lambda b: (-b.get("GPU", 0.0), -b.get("CPU", 0.0), -sum(b.values())))
    for b in order:
        for node in free:
            if all(node.get(k, 0.0) + EPS >= v for k, v in b.items()):
                for k, v in b.items():
                    node[k] = node.get(k, 0.0) - v
                break
        else:
            return False
    return True


def fits(stages: Sequence[StageRequest], nodes: Sequence[Mapping[str, float]]) -> bool:
    """Whether `stages` can all run at once on `nodes`, beside the CPU held back for Ray Data's tasks."""
    bundles = [dict(s.bundle) for s in stages for _ in range(s.replicas)]
    return place([{"CPU": TASK_CPUS}, *bundles], nodes)


def pack_waves(requests: Sequence[StageRequest], nodes: Sequence[Mapping[str, float]]) -> list[list[str]]:
    """Stages grouped into waves, largest first; a stage comes after the waves holding its `after` stages.

    >>> nodes = [{"CPU": 8, "GPU": 8}]
    >>> reqs = [StageRequest("a", 2, {"CPU": 1, "GPU": 1}), StageRequest("b", 1, {"CPU": 1, "GPU": 8}),
    ...         StageRequest("c", 4, {"CPU": 1, "GPU": 1}), StageRequest("rm", 1, {"CPU": 1, "GPU": 1}, ("a", "b", "c"))]
    >>> pack_waves(reqs, nodes)
    [['b'], ['c', 'a'], ['rm']]
    """
    _check(requests)
    order = sorted(requests, key=lambda r: (*size_key(r), requests.index(r)))
    waves: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(requests):
        ready = [r for r in order if r.name not in placed and set(r.after) <= placed]
        if not ready:
            raise ValueError(f"stages wait for each other: {sorted(r.name for r in order if r.name not in placed)}")
        wave: list[StageRequest] = []
        for r in ready:
            if fits([*wave, r], nodes):
                wave.append(r)
        wave = wave or ready[:1]  # fits nowhere: alone
        for r in order:  # streaming stages whose producers are all placed by now join if they fit
            joined = placed | {w.name for w in wave}
            if r.streams and r.name not in joined and set(r.after) <= joined and fits([*wave, r], nodes):
                wave.append(r)
        waves.append([r.name for r in wave])
        placed.update(r.name for r in wave)
    return waves


class Scheduler:
    """Which stages start now: in wave order, each that fits beside the running ones once its `after` stages
    have ended; with `side_by_side=False`, one at a time in the given order (`schedule: sequential`)."""

    def __init__(self, requests: Sequence[StageRequest], nodes: Sequence[Mapping[str, float]],
                 side_by_side: bool = True):
        self.requests = {r.name: r for r in requests}
        self.nodes = list(nodes)
        self.side_by_side = side_by_side
        self.waves = pack_waves(requests, nodes) if side_by_side else [[r.name] for r in requests]
        self.waiting = [name for wave in self.waves for name in wave]
        self.running: list[str] = []
        self.done: set[str] = set()

    def next_stages(self) -> list[str]:
        """The stages to start now (marked running); empty when the next must wait for a running one to end."""
        started: list[str] = []
        candidates = self.waiting if self.side_by_side else self.waiting[:1] if not self.running else []
        for name in list(candidates):
            r = self.requests[name]
            started_or_done = self.done | set(self.running) | set(started)
            if not set(r.after) <= (started_or_done if r.streams and self.side_by_side else self.done):
                continue
            busy = [self.requests[n] for n in self.running + started]
            if not busy or fits([*busy, r], self.nodes):
                started.append(name)
                self.waiting.remove(name)
        self.running += started
        return started

    def finish(self, name: str) -> None:
        self.running.remove(name)
        self.done.add(name)

    def ahead(self) -> list[Mapping[str, float]]:
        """The bundles to ask an autoscaler for now: every replica of the running stages and of the next wave
        still waiting, so the nodes of the next stages boot while the running ones work.

        >>> s = Scheduler([StageRequest("a", 2, {"GPU": 1}), StageRequest("b", 1, {"GPU": 4})], [{"GPU": 4}])
        >>> s.next_stages(), s.ahead()
        (['b'], [{'GPU': 4}, {'GPU': 1}, {'GPU': 1}])
        """
        nxt = next(([n for n in wave if n in self.waiting] for wave in self.waves
                    if any(n in self.waiting for n in wave)), [])
        return [dict(self.requests[n].bundle) for n in self.running + nxt for _ in range(self.requests[n].replicas)]

    @property
    def finished(self) -> bool:
        return not self.waiting and not self.running


def simulate(requests: Sequence[StageRequest], nodes: Sequence[Mapping[str, float]], seconds: Mapping[str, float],
             side_by_side: bool = True) -> dict[str, tuple[float, float]]:
    """(start, end) of every stage from its estimated duration, replaying the Scheduler; ties end in name order.
    A streaming stage ends no sooner than the last stage it consumes (the scoring of that stage's last shard,
    a small share, is left out).

    >>> reqs = [StageRequest("a", 1, {"CPU": 2}), StageRequest("b", 1, {"CPU": 2}), StageRequest("c", 1, {"CPU": 2})]
    >>> simulate(reqs, [{"CPU": 5}], {"a": 10, "b": 4, "c": 3})
    {'a': (0.0, 10.0), 'b': (0.0, 4.0), 'c': (4.0, 7.0)}
    """
    sched = Scheduler(requests, nodes, side_by_side)
    now, ends, out = 0.0, {}, {}
    while not sched.finished:
        for name in sched.next_stages():
            r = sched.requests[name]
            ends[name] = now + float(seconds[name])
            if r.streams and side_by_side:
                ends[name] = max([ends[name], *(ends[a] for a in r.after)])
            out[name] = (now, ends[name])
        name = min(sched.running, key=lambda n: (ends[n], n))
        now = ends[name]
        sched.finish(name)
    return {r.name: out[r.name] for r in requests}


def _check(requests: Sequence[StageRequest]) -> None:
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique: {names}")
    unknown = sorted({a for r in requests for a in r.after} - set(names))
    if unknown:
        raise ValueError(f"stages wait for unknown stages: {unknown}")
    for r in requests:
        if r.replicas < 1:
            raise ValueError(f"{r.name}: replicas must be >= 1, got {r.replicas}")
