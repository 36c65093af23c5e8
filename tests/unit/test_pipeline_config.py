"""The `crowdselect run` config: validated before any work, errors name the file and the dotted key."""

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.pipeline.config import load_run_config

BASE = """
out: {out}
pool: {{path: pool.jsonl}}
generators:
  - {{name: a, family: f, size_b: 1, model: m1}}
  - {{name: b, family: f, size_b: 2, model: m2, backend: hf}}
rewards:
  - {{name: judge, model: j, kind: judge}}
"""


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_loads_with_defaults_and_overrides(tmp_path):
    path = write(tmp_path, BASE.format(out=tmp_path / "o"))
    cfg = load_run_config(path, overrides=["generators[1].max_tokens=20", "selection.k=5", "pool.shard_size=8"])
    assert cfg.pool.path == ["pool.jsonl"] and cfg.pool.shard_size == 8
    assert [g.max_tokens for g in cfg.generators] == [512, 20]
    assert cfg.selection.k == 5 and cfg.metric_reward == "judge"
    assert load_run_config(path, out="elsewhere").out == "elsewhere"


@pytest.mark.parametrize("override, message", [
    ("generators[0].size_b=zero", "command line: generators[0].size_b: expected a number, got 'zero'"),
    ("generators[1].backend=tgi", "command line: generators[1].backend: must be one of vllm, hf, openai"),
    ("generators[0].sampling.temprature=0", "command line: generators[0].sampling.temprature: unknown sampling"),
    ("generators[0].name=b", "command line: generators: name 'b' is listed twice"),
    ("generators[0].name=a/b", "command line: generators[0].name: 'a/b' must be letters"),
    ("generators[1].backend=openai", "run.yaml: generators[1].base_url: the openai backend needs"),
    ("pool.format=csv", "command line: pool.format: must be one of auto, plain, sharegpt, alpaca, messages"),
    ("pool.shard_size=0", "command line: pool.shard_size: must be >= 1"),
    ("rewards[0].kind=oracle", "command line: rewards[0].kind: must be one of classifier, judge"),
    ("selection.k=0", "command line: selection.k: must be >= 1"),
    ("generator.x=1", "command line: generator: unknown key"),
])
def test_errors_name_the_source_and_key(tmp_path, override, message):
    """A bad value set by an override is blamed on the command line, one the file lacks on the file."""
    path = write(tmp_path, BASE.format(out=tmp_path / "o"))
    with pytest.raises(ConfigError) as e:
        load_run_config(path, overrides=[override])
    assert message in str(e.value)


def test_errors_in_the_file_name_the_file(tmp_path):
    text = BASE.format(out=tmp_path / "o").replace("size_b: 2", "size_b: two")
    with pytest.raises(ConfigError, match=r"run.yaml: generators\[1\].size_b: expected a number, got 'two'"):
        load_run_config(write(tmp_path, text))


def test_crowd_of_one_and_missing_out(tmp_path):
    one = BASE.format(out="o").replace("  - {name: b, family: f, size_b: 2, model: m2, backend: hf}\n", "")
    with pytest.raises(ConfigError, match="generators: a crowd needs at least 2 generators, got 1"):
        load_run_config(write(tmp_path, one))
    with pytest.raises(ConfigError, match="out: give the run directory"):
        load_run_config(write(tmp_path, BASE.format(out="null")))


def test_classifier_on_vllm(tmp_path):
    """`backend: vllm` for a classifier loads; its GPUs must match vLLM's ranks, and transformers kwargs are refused."""
    path = write(tmp_path, BASE.format(out=tmp_path / "o"))
    vllm = ["rewards[0].kind=classifier", "rewards[0].backend=vllm"]
    cfg = load_run_config(path, overrides=[*vllm, "rewards[0].resources.num_gpus=2",
                                           "rewards[0].engine_kwargs.tensor_parallel_size=2"])
    assert (cfg.rewards[0].kind, cfg.rewards[0].backend, cfg.rewards[0].resources.num_gpus) == ("classifier", "vllm", 2)
    for extra, message in [
        ("rewards[0].resources.num_gpus=0.5", "rewards[0].resources.num_gpus: 0.5 for the vllm classifier 'judge' "
                                             "disagrees with tensor_parallel_size x pipeline_parallel_size = 1"),
        ("rewards[0].model_kwargs.attn_implementation=eager", "rewards[0].model_kwargs: go to transformers'"),
        ("rewards[0].engine_kwargs.tensor_parallel_size=two", "rewards[0].engine_kwargs: tensor_parallel_size and"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_run_config(path, overrides=[*vllm, extra])
        assert message in str(e.value)


def test_two_primary_rewards_rejected(tmp_path):
    text = BASE.format(out="o") + "  - {name: j2, model: j, kind: judge, primary: true}\n"
    text = text.replace("kind: judge}", "kind: judge, primary: true}", 1)
    with pytest.raises(ConfigError, match="exactly one reward model needs `primary: true`"):
        load_run_config(write(tmp_path, text))


def test_train_section_reads_the_runs_selection(tmp_path):
    from crowdselect.pipeline.config import train_config

    cfg = load_run_config(write(tmp_path, BASE.format(out=tmp_path / "o") + "train: {optim: {lr: 2.0e-5}}\n"))
    tc = train_config(cfg, file="run.yaml")
    assert tc.data.path == [str(tmp_path / "o" / "select" / "selected.jsonl")]
    assert tc.out == str(tmp_path / "o" / "train") and tc.optim.lr == 2e-5
    bad = BASE.format(out=tmp_path / "o") + "train: {optim: {lr: -1}}\n"
    with pytest.raises(ConfigError, match="train.optim: lr: must be > 0|train.optim.lr"):
        load_run_config(write(tmp_path, bad))


def test_local_ray_leaves_a_cpu_for_the_tasks_that_feed_a_model_actor(tmp_path, monkeypatch):
    import os

    from crowdselect.pipeline.job import local_cpus

    path = write(tmp_path, BASE.format(out=tmp_path / "o"))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert local_cpus(load_run_config(path)) == 2  # actors of 1 CPU fit beside the feeders
    assert local_cpus(load_run_config(path, overrides=["generators[1].resources.num_cpus=2"])) == 3  # 2-core laptop
    assert local_cpus(load_run_config(path, overrides=["rewards[0].resources.num_cpus=4"])) == 5
    assert local_cpus(load_run_config(path, overrides=["ray.num_cpus=6", "generators[1].resources.num_cpus=2"])) == 6


OLD_FORM = """
out: {out}
pool: {{path: pool.jsonl}}
generators:
  - {{name: a, family: f, size_b: 1, model: m1, replicas: 2, batch_size: 4}}
  - {{name: b, family: f, size_b: 2, model: m2, backend: hf, resources: {{num_cpus: 2}}}}
  - {{name: c, family: g, size_b: 3, model: m3, backend: openai, base_url: "http://h/v1", max_retries: 1}}
rewards:
  - {{name: judge, model: j, kind: judge, concurrency: 3, tokens_per_forward: 4096}}
embedder: {{num_gpus: 0}}
"""


def test_scheduling_keys_at_the_top_level_still_load_with_one_deprecation_line(tmp_path, capsys):
    path = write(tmp_path, OLD_FORM.format(out=tmp_path / "o"))
    cfg = load_run_config(path)
    a, b, c = cfg.generators
    assert (a.resources.replicas, a.resources.batch_size, b.resources.num_cpus) == (2, 4, 2.0)
    assert c.resources.max_retries == 1 and cfg.rewards[0].resources.concurrency == 3
    assert cfg.rewards[0].tokens_per_forward == 4096  # not a resources key: it stays where it is
    lines = capsys.readouterr().err.splitlines()
    assert f"[crowdselect] {path}: generators[0].replicas: move under resources: (resources.replicas); " \
           "the top-level key is deprecated" in lines
    assert sum("deprecated" in line for line in lines) == 5  # replicas, batch_size, max_retries, concurrency, num_gpus
    load_run_config(path)
    assert "deprecated" not in capsys.readouterr().err  # said once per process


def test_a_scheduling_key_in_both_places_is_an_error(tmp_path):
    text = OLD_FORM.format(out=tmp_path / "o").replace("resources: {num_cpus: 2}", "num_cpus: 1, resources: {num_cpus: 2}")
    with pytest.raises(ConfigError, match=r"run.yaml: generators\[1\].num_cpus: given here and as resources.num_cpus"):
        load_run_config(write(tmp_path, text))


def test_fingerprints_leave_out_resources_and_who_a_member_is(tmp_path):
    """What a stored stage hashes is what it computes: resources, family, size_b, primary, api_key_env and
    tokens_per_forward may change and the stage is resumed, not redone; max_tokens may not."""
    from crowdselect.pipeline.stages import output_settings

    path = write(tmp_path, BASE.format(out=tmp_path / "o"))
    base = load_run_config(path)
    same = load_run_config(path, overrides=[
        "generators[0].family=other", "generators[0].size_b=70", "generators[0].resources.replicas=8",
        "generators[0].resources.gpus_per_replica=1", "rewards[0].tokens_per_forward=4096",
        "rewards[0].resources.concurrency=4", "embedder.resources.batch_size=8"])
    assert output_settings(same.generators[0]) == output_settings(base.generators[0])
    assert output_settings(same.rewards[0]) == output_settings(base.rewards[0])
    assert output_settings(same.embedder) == output_settings(base.embedder)
    other = load_run_config(path, overrides=["generators[0].max_tokens=20"])
    assert output_settings(other.generators[0]) != output_settings(base.generators[0])
    assert {"resources", "family", "size_b", "api_key_env"}.isdisjoint(output_settings(base.generators[0]))
    assert {"resources", "primary", "tokens_per_forward"}.isdisjoint(output_settings(base.rewards[0]))
