"""The stage planner on capacity dicts: packing, waves, the scheduler, the time model, and a run config's plan."""

import random

import pytest

from crowdselect.core.config import build
from crowdselect.pipeline import estimate
from crowdselect.pipeline.config import RunConfig
from crowdselect.pipeline.plan import Scheduler, StageRequest, fits, pack_waves, simulate
from crowdselect.pipeline.waves import plan_text, stage_requests, stage_work
from crowdselect.runtime.capacity import autoscaler_nodes, stage_resources

H100 = {"CPU": 96.0, "GPU": 8.0, "accelerator_type:H100": 1.0}


def gpu_stage(name, replicas, gpus, after=()):
    return StageRequest(name, replicas, {"CPU": 1.0, "GPU": float(gpus)}, tuple(after))


def test_largest_first_and_packed_per_node():
    nodes = [dict(H100), dict(H100)]
    reqs = [gpu_stage("small-a", 4, 1), gpu_stage("big", 1, 8), gpu_stage("mid", 3, 2), gpu_stage("small-b", 2, 1)]
    # big takes a node, mid (6 GPUs) goes beside it; small-a (4) would make 18 > 16, small-b (2) fills the rest
    assert pack_waves(reqs, nodes) == [["big", "mid", "small-b"], ["small-a"]]


def test_a_replica_never_spans_nodes():
    # 9 GPUs free in all, but 3 replicas of 3 GPUs need 3 places of 3: only two exist (8-GPU node holds two)
    nodes = [{"CPU": 8, "GPU": 8}, {"CPU": 8, "GPU": 2}]
    assert not fits([gpu_stage("tp3", 3, 3)], nodes)
    assert fits([gpu_stage("tp3", 2, 3), gpu_stage("one", 2, 1)], nodes)


def test_one_cpu_is_kept_for_ray_data_tasks():
    cpu_stages = [StageRequest(f"g{i}", 1, {"CPU": 1.0}) for i in range(8)]
    waves = pack_waves(cpu_stages, [{"CPU": 8.0}])
    assert [len(w) for w in waves] == [7, 1]


def test_a_stage_that_fits_nowhere_runs_alone_and_blocks_nothing():
    nodes = [{"CPU": 16.0, "GPU": 8.0, "accelerator_type:A100": 1.0}]
    h100 = StageRequest("needs-h100", 1, {"CPU": 1.0, "GPU": 8.0, "accelerator_type:H100": 0.001})
    too_many = gpu_stage("too-many", 16, 1)
    reqs = [h100, too_many, gpu_stage("a", 2, 1), gpu_stage("b", 2, 1)]
    waves = pack_waves(reqs, nodes)
    assert waves == [["a", "b"], ["too-many"], ["needs-h100"]]  # the larger misfit first, each alone
    times = simulate(reqs, nodes, {"needs-h100": 5, "too-many": 5, "a": 3, "b": 4})
    assert times == {"needs-h100": (9.0, 14.0), "too-many": (4.0, 9.0), "a": (0.0, 3.0), "b": (0.0, 4.0)}


def test_rewards_wait_for_every_generator():
    gens = [gpu_stage(f"generate:{i}", 1, 1) for i in range(3)]
    rm = gpu_stage("reward:rm", 1, 1, after=[g.name for g in gens])
    waves = pack_waves([rm, *gens], [dict(H100)])
    assert waves == [["generate:0", "generate:1", "generate:2"], ["reward:rm"]]
    times = simulate([*gens, rm], [dict(H100)], {"generate:0": 1, "generate:1": 7, "generate:2": 2, "reward:rm": 1})
    assert times["reward:rm"] == (7.0, 8.0)


def test_a_later_stage_starts_when_room_frees_not_when_its_wave_ends():
    reqs = [gpu_stage("long", 1, 6), gpu_stage("short", 1, 2), gpu_stage("next", 1, 2)]
    nodes = [{"CPU": 8, "GPU": 8}]
    assert pack_waves(reqs, nodes) == [["long", "short"], ["next"]]
    assert simulate(reqs, nodes, {"long": 10, "short": 2, "next": 3})["next"] == (2.0, 5.0)


def test_sequential_runs_one_at_a_time_in_config_order():
    reqs = [gpu_stage("b", 1, 1), gpu_stage("a", 1, 1), gpu_stage("rm", 1, 1, after=["a", "b"])]
    times = simulate(reqs, [dict(H100)], {"a": 2, "b": 3, "rm": 1}, side_by_side=False)
    assert times == {"b": (0.0, 3.0), "a": (3.0, 5.0), "rm": (5.0, 6.0)}


def test_random_plans_end_and_never_overfill():
    rng = random.Random(7)
    for _ in range(200):
        nodes = [{"CPU": float(rng.choice([2, 8, 32])), "GPU": float(rng.choice([0, 1, 4, 8]))}
                 for _ in range(rng.randint(1, 4))]
        reqs = [StageRequest(f"s{i}", rng.randint(1, 6), {"CPU": float(rng.choice([0.5, 1, 2])),
                                                          "GPU": float(rng.choice([0, 0, 1, 2, 8]))})
                for i in range(rng.randint(1, 9))]
        reqs.append(StageRequest("last", 1, {"CPU": 1.0}, tuple(r.name for r in reqs)))
        sched, started = Scheduler(reqs, nodes), []
        while not sched.finished:
            new = sched.next_stages()
            started += new
            running = [next(r for r in reqs if r.name == n) for n in sched.running]
            assert len(running) == 1 or fits(running, nodes), (nodes, running)
            sched.finish(sched.running[0])
        assert sorted(started) == sorted(r.name for r in reqs) and started[-1] == "last"


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown stages"):
        pack_waves([gpu_stage("a", 1, 1, after=["nope"])], [dict(H100)])
    with pytest.raises(ValueError, match="wait for each other"):
        pack_waves([gpu_stage("a", 1, 1, after=["b"]), gpu_stage("b", 1, 1, after=["a"])], [dict(H100)])


def test_autoscaler_config_gives_its_largest_cluster():
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    for name, count, res in (("head", 1, {"CPU": 8}), ("gpu_h100", 3, {"CPU": 96, "GPU": 8, "accelerator_type:H100": 1})):
        group = config.node_group_configs.add(name=name, max_count=count)
        group.resources.update(res)
    nodes = autoscaler_nodes(config)
    assert nodes.count({"CPU": 8.0}) == 1 and nodes.count(H100) == 3
    assert autoscaler_nodes(None) == []
    assert stage_resources({"CPU": 2, "memory": 5e9, "object_store_memory": 1e9, "node:1.2.3.4": 1}) == {"CPU": 2.0}


def test_time_model_reproduces_the_scaling_doc():
    hours = lambda size, gpus: estimate.StageWork("generate", "vllm", 100_000, 500, 1, gpus, size).gpu_seconds_of_work() / 3600  # noqa: E731
    assert round(hours(8, 1), 1) == 4.1 and round(hours(70, 2), 1) == 16.0 and round(hours(405, 8), 1) == 90.2
    rm = estimate.StageWork("reward", "hf", 1_900_000, 600, 1, 1.0)
    assert round(rm.gpu_seconds_of_work() / 3600) == 17
    cpu = estimate.StageWork("generate", "hf", 16, 128, 1, 0.0, 0.5)  # the quickstart's 0.5B: 16 x 128 at 12 tok/s
    assert cpu.seconds() == pytest.approx(25 + 16 * 128 / 12)
    assert estimate.StageWork("generate", "dry", 0, 64, 1).seconds() == 0.0


def dry_config(tmp_path, **resources):
    gens = [{"name": f"g{i}", "family": "f", "size_b": i + 1, "backend": "dry", "max_tokens": 32,
             "resources": resources} for i in range(3)]
    return build(RunConfig, {"pool": {"path": ["p.jsonl"]}, "generators": gens, "out": str(tmp_path),
                             "rewards": [{"name": "rm", "backend": "dry", "resources": {"num_gpus": 1}}]}, file="t.yaml")


def test_run_config_requests_and_plan_text(tmp_path):
    cfg = dry_config(tmp_path, replicas=2, gpus_per_replica=1, accelerator_type="H100")
    assert cfg.schedule == "packed"
    reqs = stage_requests(cfg)
    assert reqs[0] == StageRequest("generate:g0", 2, {"CPU": 1.0, "GPU": 1.0, "accelerator_type:H100": 0.001})
    assert reqs[-1].after == ("generate:g0", "generate:g1", "generate:g2") and reqs[-1].streams
    assert stage_work(cfg, 10)["reward:rm"].rows == 30
    text = plan_text(cfg, 1000, [dict(H100)])
    assert "3 model stages" not in text and "4 model stages in 1 wave(s)" in text  # the reward streams beside
    assert "wave 1:" in text and "generate:g2" in text and "2 x {CPU 1, GPU 1, accelerator_type:H100 0.001}" in text
    assert "reward:rm" in text.split("wave 1:")[1]
    (tmp_path / "generate" / "g1").mkdir(parents=True)
    (tmp_path / "generate" / "g1" / "_manifest.json").write_text('{"complete": true}')
    assert "generate:g1" in [line.split()[0] for line in plan_text(cfg, 1000, [dict(H100)]).splitlines()
                             if "done, skipped" in line]


def test_a_streaming_reward_starts_beside_its_generators_once_they_all_started():
    gens = [gpu_stage(f"generate:{i}", 1, 2) for i in range(3)]
    rm = StageRequest("reward:rm", 1, {"CPU": 1.0, "GPU": 1.0}, tuple(g.name for g in gens), streams=True)
    assert pack_waves([rm, *gens], [dict(H100)]) == [["generate:0", "generate:1", "generate:2", "reward:rm"]]
    times = simulate([*gens, rm], [dict(H100)], {"generate:0": 1, "generate:1": 7, "generate:2": 2, "reward:rm": 3})
    assert times["reward:rm"] == (0.0, 7.0)  # scores as the shards come; ends with the last generator
    # no room beside the generators: it waits for room, and never starts before every generator has started
    big = [gpu_stage(f"generate:{i}", 1, 4) for i in range(3)]
    times = simulate([*big, rm], [dict(H100)], {"generate:0": 5, "generate:1": 7, "generate:2": 2, "reward:rm": 3})
    assert times["generate:2"] == (5.0, 7.0) and times["reward:rm"][0] >= times["generate:2"][0]
    sched = Scheduler([*big, rm], [dict(H100)])
    assert sched.next_stages() == ["generate:0", "generate:1"]
    sched.finish("generate:0")
    assert sched.next_stages() == ["generate:2"]  # the reward does not take the room the last generator needs
    sched.finish("generate:2")
    assert sched.next_stages() == ["reward:rm"]
    # one after another, a streaming stage still waits for its producers to end
    seq = simulate([*gens, rm], [dict(H100)], {"generate:0": 1, "generate:1": 7, "generate:2": 2, "reward:rm": 3},
                   side_by_side=False)
    assert seq["reward:rm"] == (10.0, 13.0)
