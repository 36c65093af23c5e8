"""Every numeric setting of `crowdselect select` is checked when the config is read, naming the flag or key:
a value that would crash a stage later (n_init 0, seed -1) or silently spoil every score (weights inf/nan,
size_b .nan) never reaches the work."""

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.select.config import FLAG_KEYS, load_select_config

CROWD = """
generators:
  - {name: a, family: f, size_b: 1}
  - {name: b, family: f, size_b: 2}
"""


def load(tmp_path, given=None, overrides=(), text=CROWD):
    path = tmp_path / "crowd.yaml"
    path.write_text(text)
    return load_select_config(str(path), {k: (given or {}).get(k) for k in FLAG_KEYS}, list(overrides))


@pytest.mark.parametrize(("given", "message"), [
    ({"weights": "inf,1,1"}, "--weights: expected a finite number, got 'inf'"),
    ({"weights": "nan,1,1"}, "--weights: expected a finite number, got 'nan'"),
    ({"weights": "-1,1,1"}, "--weights: need numbers >= 0, not all 0, got [-1.0, 1.0, 1.0]"),
    ({"weights": "0,0,0"}, "--weights: need numbers >= 0, not all 0, got [0.0, 0.0, 0.0]"),
    ({"seed": -1}, "--seed: must be an integer from 0 to 2**32 - 1, got -1"),
    ({"seed": 2**32}, f"--seed: must be an integer from 0 to 2**32 - 1, got {2**32}"),
])
def test_bad_flags_are_refused_naming_the_flag(tmp_path, given, message):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, given)
    assert str(e.value) == message


@pytest.mark.parametrize(("override", "reason"), [
    ("selection.kmeans.n_init=0", "must be >= 1, got 0"),
    ("selection.kmeans.max_iter=0", "must be >= 1, got 0"),
    ("selection.kmeans.tol=-1", "must be >= 0, got -1.0"),
    ("selection.kmeans.tol=.nan", "expected a finite number, got nan"),
    ("selection.kmeans.workers=-2", "must be >= 0, got -2"),
    ("selection.kmeans.local_rows=-1", "must be >= 0, got -1"),
    ("selection.kmeans.fit_sample=0", "must be >= 1, got 0"),
    ("selection.kmeans.fit_sample=3", "must be >= clusters (10) to fit them, got 3"),
    ("selection.n_quantiles=1", "must be >= 2, got 1"),
    ("selection.sketch_size=0", "must be >= 2, got 0"),
    ("embedder.resources.batch_size=0", "must be >= 1, got 0"),
    ("embedder.max_length=0", "must be >= 1, got 0"),
    ("embedder.resources.concurrency=0", "must be >= 1, got 0"),
    ("embedder.resources.num_gpus=-1", "must be >= 0, got -1.0"),
    ("input.lines_per_block=0", "must be >= 1, got 0"),
    ("ray.num_cpus=0", "must be >= 1, got 0"),
    ("generators[1].size_b=.nan", "expected a finite number, got nan"),
    ("generators[1].size_b=.inf", "expected a finite number, got inf"),
])
def test_bad_settings_are_refused_naming_the_key(tmp_path, override, reason):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, overrides=[override])
    assert str(e.value) == f"command line: {override.partition('=')[0]}: {reason}"


def test_a_nan_size_in_the_crowd_file_names_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text=CROWD.replace("size_b: 2", "size_b: .nan"))
    assert str(e.value).endswith("crowd.yaml: generators[1].size_b: expected a finite number, got nan")


def test_the_edges_of_every_range_are_accepted(tmp_path):
    cfg = load(tmp_path, {"weights": "0,0,1", "seed": 0}, [
        "selection.kmeans.n_init=1", "selection.kmeans.tol=0", "selection.n_quantiles=2",
        "selection.kmeans.fit_sample=10", "input.lines_per_block=1", "embedder.resources.num_gpus=0"])
    assert cfg.selection.weights == [0.0, 0.0, 1.0] and cfg.selection.seed == 0
    assert load(tmp_path, {"seed": 2**32 - 1, "cluster": False}, ["selection.kmeans.fit_sample=3"]).selection.seed


SAME_SIZE = """
generators:
  - {name: q-a, family: qwen, size_b: 7}
  - {name: q-b, family: qwen, size_b: 7}
  - {name: g, family: gemma, size_b: 9}
"""


def test_siblings_of_one_size_with_a_stability_weight_are_refused_naming_them(tmp_path):
    """Two 'qwen' of size 7 dropped stability for every row, with a note blaming 'no family with 2 answering
    members'. Stability needs 2 distinct sizes in a family: a config error names the family and the fix."""
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text=SAME_SIZE)
    assert str(e.value).endswith(
        "crowd.yaml: generators: stability ranks a family's answers by size and needs a family with 2 distinct "
        "sizes, but family 'qwen' (q-a, q-b) has one size, size_b 7; fix size_b, or give stability no weight "
        "(--weights 1,1,0)")
    with pytest.raises(ConfigError, match="or choose another strategy"):
        load(tmp_path, {"strategy": "stability-top"}, text=SAME_SIZE)
    assert load(tmp_path, {"weights": "1,1,0"}, text=SAME_SIZE).selection.weights[2] == 0
    assert load(tmp_path, {"strategy": "random"}, text=SAME_SIZE).selection.strategy == "random"
    # another family with 2 sizes gives stability its signal: the run goes on (and names 'qwen' in its notes)
    assert load(tmp_path, text=SAME_SIZE + "  - {name: g2, family: gemma, size_b: 27}\n")
    # no siblings at all: stability is undefined for the crowd, and the run says so (as before)
    assert load(tmp_path, text=SAME_SIZE.replace("family: qwen, size_b: 7}\n  - {name: q-b, family: qwen",
                                                 "family: qwen, size_b: 7}\n  - {name: q-b, family: other"))


def test_the_pipeline_refuses_siblings_of_one_size_before_generating(tmp_path):
    from crowdselect.pipeline.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text("out: o\npool: {path: pool.jsonl}\nrewards:\n  - {name: j, model: m, kind: judge}\n"
                    + SAME_SIZE.replace("}", ", model: m}"))
    with pytest.raises(ConfigError, match="family 'qwen' \\(q-a, q-b\\) has one size"):
        load_run_config(str(path))
