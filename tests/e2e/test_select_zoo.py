"""`crowdselect select` and `crowdselect inspect` on a crowd shaped like Magpie-100K-Generator-Zoo (one struct
column per generator, three reward keys; tests/fixtures/make_zoo.py): the same selection, metrics, best answers
and missing-answer counts as the same crowd flattened to `{name}_response` / `{name}_reward`, on both
executors, from Parquet shards and from JSON lines, read in several blocks per file."""

import json

import pyarrow.parquet as pq
import pytest
from fixtures import make_zoo  # tests/fixtures/make_zoo.py (tests/ is on the path, as conftest.py's folder)

from crowdselect.cli import main

MAPPING = f'input: {{wide: {{id: uuid, reward: "{{name}}.{make_zoo.PRIMARY}"}}}}\n'
BLOCKS = "input.lines_per_block=40"  # 100 rows per shard, 300 in the JSON file: several blocks each
SAME = ["id", "n_answers", "difficulty", "separability", "stability", "q_difficulty", "q_separability",
        "q_stability", "best_model", "best_reward", "response_chars", "score", "selected"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp("zoo")
    make_zoo.write_zoo(d, n=300, shards=3)
    (d / "zoo.yaml").write_text(make_zoo.crowd_yaml() + MAPPING)
    return d


def select(config, data, out, executor, *extra):
    return main(["select", "--config", str(config), "--input", str(data), "--out", str(out), "--k", "40",
                 "--no-cluster", "--executor", executor, BLOCKS, *extra])


def outputs(out):
    run = json.loads((out / "run.json").read_text())
    scores = pq.read_table(out / "scores.parquet").sort_by("id").select(SAME)
    return (out / "selected.jsonl").read_bytes(), scores, run["counts"]


@pytest.fixture(scope="module")
def flat(zoo, tmp_path_factory):
    """The flat layout's outputs (in this process: the two executors give byte-identical outputs)."""
    out = tmp_path_factory.mktemp("flat")
    assert select(zoo / "crowd.yaml", zoo / "flat.parquet", out, "local") == 0
    sel, scores, counts = outputs(out)
    assert counts["missing_answers"] == {"null_response": 1, "empty_response": 1, "null_reward": 1}
    return sel, scores, counts


@pytest.mark.parametrize("executor, data", [("local", "data"), ("local", "zoo.jsonl"), ("ray", "data"),
                                            ("ray", "zoo.jsonl")])
def test_struct_columns_select_as_the_flat_layout_does(ray_local, zoo, flat, tmp_path, executor, data):
    assert select(zoo / "zoo.yaml", zoo / data, tmp_path, executor) == 0
    sel, scores, counts = outputs(tmp_path)
    assert sel == flat[0]  # the same rows, best answers, rewards and metrics, byte for byte
    assert scores.equals(flat[1])
    assert counts == flat[2]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["format"] == "wide" and run["executor"] == executor
    assert run["input_columns"]["Qwen2.5-3B-Instruct"] == {  # where the answers were read, split at the right dot
        "response": ["Qwen2.5-3B-Instruct", "content"], "reward": ["Qwen2.5-3B-Instruct", make_zoo.PRIMARY]}


def test_unmapped_zoo_names_the_reward_keys_and_inspect_proposes_a_config_that_works(zoo, tmp_path, capsys):
    assert select(zoo / "crowd.yaml", zoo / "data", tmp_path / "x", "local") == 2
    err = capsys.readouterr().err
    assert f"the generator structs hold 3 reward keys: {', '.join(make_zoo.REWARD_KEYS)}" in err
    assert MAPPING.strip() in err and "Traceback" not in err and not (tmp_path / "x" / "selected.jsonl").exists()
    assert main(["inspect", str(zoo / "data"), "--write-config", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    for g, _, _ in make_zoo.GENERATORS:
        assert g in out
    proposed = (tmp_path / "p.yaml").read_text()
    assert f'\n    reward: "{{name}}.{make_zoo.PRIMARY}"\n' in proposed  # chosen in the open: the file runs as it is
    assert main(["select", "--config", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "p"), "--k", "40",
                 "--no-cluster", "--executor", "local"]) == 0
    assert select(zoo / "zoo.yaml", zoo / "data", tmp_path / "m", "local") == 0
    assert (tmp_path / "p" / "selected.jsonl").read_bytes() == (tmp_path / "m" / "selected.jsonl").read_bytes()
