"""Struct columns in the wide layout (the Magpie-100K-Generator-Zoo shape): dotted paths resolved against the
schema although names hold dots, the vectorised block parser against the per-line parser on struct Parquet
and JSON blocks, the reward key to choose, `crowdselect inspect` and the names it reads family and size from."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fixtures import make_zoo  # tests/fixtures/make_zoo.py (tests/ is on the path, as conftest.py's folder)

from crowdselect.cli import main
from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.core.records import FILE, LINE, TEXT
from crowdselect.crowd.blocks import parse_block, parse_lines
from crowdselect.crowd.config import WideLayout
from crowdselect.crowd.inspect import inspect_crowd, proposed_config
from crowdselect.crowd.names import family_and_size
from crowdselect.crowd.parse import EMPTY_RESPONSE, NULL_RESPONSE, NULL_REWARD
from crowdselect.crowd.wide import NUMBER, first_row, resolve_path, resolve_wide, schema_tree
from crowdselect.crowd.wide import TEXT as TEXT_KIND
from crowdselect.select.config import load_select_config

GENS = ["gemma-2-2b-it", "Qwen2.5-3B-Instruct", "Qwen2.5-7B-Instruct"]
KEYS = ("Skywork-Reward-Llama-3.1-8B", "ArmoRM-Llama3-8B-v0.1")
MAPPED = WideLayout(id="uuid", reward="{name}.Skywork-Reward-Llama-3.1-8B")
CELL = pa.struct([("content", pa.string()), *((k, pa.float64()) for k in KEYS)])
SCHEMA = pa.schema([("uuid", pa.string()), ("instruction", pa.string()), *((g, CELL) for g in GENS)])


def cell(text, r0, r1=0.5):
    return {"content": text, KEYS[0]: r0, KEYS[1]: r1}


def zoo(n=8):
    return [{"uuid": f"u{i}", "instruction": f"q {i}?", **{g: cell(f"{g} says {i}", float(i + j), -1.0)
                                                           for j, g in enumerate(GENS)}} for i in range(n)]


def test_dotted_paths_split_against_the_schema_longest_name_first():
    tree = {"Qwen2": {"5-3B-Instruct.content": TEXT_KIND}, "Qwen2.5-3B-Instruct": {"content": TEXT_KIND, KEYS[1]: NUMBER}}
    assert resolve_path("Qwen2.5-3B-Instruct." + KEYS[1], tree) == ("Qwen2.5-3B-Instruct", KEYS[1])
    assert resolve_path("Qwen2.5-3B-Instruct.content", tree) == ("Qwen2.5-3B-Instruct", "content")
    assert resolve_path("Qwen2.5-3B-Instruct.Skywork", tree) is None
    # a per-generator override names the column and field directly
    layout = WideLayout(id="uuid", reward="{name}." + KEYS[0],
                        columns={"Qwen2.5-7B-Instruct": {"reward": "Qwen2.5-7B-Instruct." + KEYS[1]}})
    paths = resolve_wide(layout, schema_tree(SCHEMA), GENS, "f").paths
    assert paths["Qwen2.5-7B-Instruct"] == (("Qwen2.5-7B-Instruct", "content"), ("Qwen2.5-7B-Instruct", KEYS[1]))
    assert paths["gemma-2-2b-it"][1] == ("gemma-2-2b-it", KEYS[0])


def test_several_reward_keys_stop_with_the_line_to_add_and_one_key_is_used(capsys):
    with pytest.raises(UserError) as e:
        resolve_wide(WideLayout(), schema_tree(SCHEMA), GENS, "zoo.parquet")
    assert str(e.value).startswith("zoo.parquet: the generator structs hold 2 reward keys: " + ", ".join(KEYS))
    assert 'input: {wide: {id: uuid, reward: "{name}.Skywork-Reward-Llama-3.1-8B"}}' in str(e.value)
    one = pa.schema([("id", pa.string()), ("instruction", pa.string()),
                     *((g, pa.struct([("content", pa.string()), (KEYS[1], pa.float32())])) for g in GENS)])
    paths = resolve_wide(WideLayout(), schema_tree(one), GENS, "f").paths
    assert paths["Qwen2.5-3B-Instruct"] == (("Qwen2.5-3B-Instruct", "content"), ("Qwen2.5-3B-Instruct", KEYS[1]))
    assert f"one reward key, '{KEYS[1]}': it is the reward" in capsys.readouterr().err


def test_an_unlisted_generator_struct_is_named_unless_ignored():
    with pytest.raises(UserError, match="struct column 'Qwen2.5-7B-Instruct' holds a generator's answers, but "
                                        "the crowd config does not list"):
        resolve_wide(MAPPED, schema_tree(SCHEMA), GENS[:2], "f")
    ignoring = WideLayout(id="uuid", reward="{name}." + KEYS[0], ignore=["Qwen2.5-7B-Instruct"])
    assert set(resolve_wide(ignoring, schema_tree(SCHEMA), GENS[:2], "f").paths) == set(GENS[:2])


def raw_block(tmp_path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "z.parquet")
    t = pq.read_table(tmp_path / "z.parquet")
    t = t.append_column(FILE, pa.array(["z.parquet"] * t.num_rows))
    return t.append_column(LINE, pa.array(range(1, t.num_rows + 1), pa.int64()))


def json_block(rows, extra=()):
    lines = [json.dumps(r) for r in rows] + list(extra)
    return pa.table({FILE: pa.array(["z.jsonl"] * len(lines)), LINE: pa.array(range(1, len(lines) + 1), pa.int64()),
                     TEXT: pa.array(lines)})



def odd_rows():
    rows = zoo()
    rows[1]["gemma-2-2b-it"] = None  # null struct: did not answer
    rows[2]["Qwen2.5-3B-Instruct"]["content"] = " "  # empty answer
    rows[3]["Qwen2.5-7B-Instruct"][KEYS[0]] = None  # null primary reward
    rows[4]["Qwen2.5-7B-Instruct"][KEYS[0]] = float("nan")  # NaN: null reward
    rows[5]["gemma-2-2b-it"][KEYS[1]] = None  # another reward model's null: not this run's business
    rows[6]["gemma-2-2b-it"][KEYS[0]] = float("inf")  # reject
    rows[7]["gemma-2-2b-it"], rows[7]["Qwen2.5-3B-Instruct"] = None, None  # one answer left: reject
    return rows


def test_struct_parquet_block_matches_the_per_line_parser(tmp_path, per_line):
    block = raw_block(tmp_path, odd_rows())
    layout = resolve_wide(MAPPED, schema_tree(block.schema), GENS, "z.parquet")
    fast = parse_block(block, "wide", GENS, layout)
    assert per_line == [7, 8]  # only the rejects go through the per-line parser
    ref = parse_lines(block, np.arange(block.num_rows), "wide", GENS, layout)
    assert fast.schema == ref.schema and fast.to_pylist() == ref.to_pylist()
    errors = fast.column(C.ERROR).to_pylist()
    assert errors[:6] == [None] * 6 and "non-finite" in errors[6] and "fewer than 2" in errors[7]
    assert [fast.column(m).to_pylist()[:6] for m in (NULL_RESPONSE, EMPTY_RESPONSE, NULL_REWARD)] == \
        [[0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]]
    assert fast.column(C.REWARDS).to_pylist()[0] == [0.0, 1.0, 2.0]  # the primary key, not the other


def test_struct_json_block_matches_the_per_line_parser_with_absent_and_mistyped_objects(tmp_path, per_line):
    rows = [r for r in odd_rows() if r["uuid"] != "u4"]  # JSON has no NaN
    del rows[0]["Qwen2.5-7B-Instruct"]  # an absent object: did not answer, as a null one
    (tmp_path / "z.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    layout = resolve_wide(MAPPED, first_row(str(tmp_path / "z.jsonl"))[1], GENS, "z.jsonl")  # later rows show it
    block = json_block(rows)
    fast = parse_block(block, "wide", GENS, layout)
    ref = parse_lines(block, np.arange(block.num_rows), "wide", GENS, layout)
    assert fast.to_pylist() == ref.to_pylist() and fast.column(NULL_RESPONSE).to_pylist()[:2] == [1, 1]
    bad = dict(rows[0], uuid="s1", **{"gemma-2-2b-it": "an answer, not an object"})
    block = json_block(rows, [json.dumps(bad)])
    out = parse_block(block, "wide", GENS, layout)
    assert out.to_pylist() == parse_lines(block, np.arange(block.num_rows), "wide", GENS, layout).to_pylist()
    assert out.column(C.ERROR).to_pylist()[-1] == "column 'gemma-2-2b-it' must be an object, got str"


@pytest.mark.parametrize("name, expected", [
    ("Qwen2.5-72B-Instruct", ("qwen2.5", 72)), ("gemma-2-27b-it", ("gemma-2", 27)),
    ("Meta-Llama-3.1-405B-Instruct", ("llama-3.1", 405)), ("Meta-Llama-3-8B-Instruct", ("llama-3", 8)),
    ("Phi-3-mini-128k-instruct", ("phi-3", 3.8)), ("Phi-3-small-128k-instruct", ("phi-3", 7)),
    ("Phi-3-medium-128k-instruct", ("phi-3", 14)), ("Qwen2-1.5B-Instruct", ("qwen2", 1.5)),
    ("qwen2.5-coder-0.5b", ("qwen2.5-coder", 0.5)), ("smollm2-135m", ("smollm2", 0.135)),
    ("Qwen/Qwen2.5-7B-Instruct", ("qwen2.5", 7)),
    ("gpt-4o", None), ("Mixtral-8x7B-Instruct-v0.1", None), ("claude", None), ("7b", None),
])
def test_family_and_size_from_names(name, expected):
    assert family_and_size(name) == expected


def test_inspect_shows_the_zoo_and_proposes_a_config_select_reads(tmp_path, capsys):
    make_zoo.write_zoo(tmp_path, n=60, shards=2)
    insp = inspect_crowd([str(tmp_path / "data")])
    assert insp.rows == 60 and insp.rows_from == "Parquet metadata" and insp.struct.answer == "content"
    assert list(insp.generators) == [g for g, _, _ in make_zoo.GENERATORS]
    assert list(insp.rewards) == list(make_zoo.REWARD_KEYS) and insp.rewards[make_zoo.PRIMARY].nulls == 1
    assert insp.generators["gemma-2-9b-it"].null_response == 1
    assert insp.generators["Qwen2.5-3B-Instruct"].empty_response == 1
    assert main(["inspect", str(tmp_path / "zoo.jsonl"), "--write-config", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    assert "wide, struct columns" in out and "rows:       60 (counted)" in out and "Skywork-Reward-Gemma-2-27B" in out
    text = (tmp_path / "c.yaml").read_text()
    assert f'\n    reward: "{{name}}.{make_zoo.PRIMARY}"\n' in text and text in out
    for other in make_zoo.REWARD_KEYS[1:]:  # the alternatives stay visible, commented
        assert f'#   reward: "{{name}}.{other}"' in text
    gens = yaml.safe_load(text)["generators"]
    assert [(g["name"], g["family"], g["size_b"]) for g in gens] == [tuple(x) for x in make_zoo.GENERATORS]
    cfg = load_select_config(str(tmp_path / "c.yaml"), {"out": str(tmp_path / "o")}, [])
    assert cfg.input.wide.id == "uuid" and cfg.input.path == [str(tmp_path / "zoo.jsonl")]
    assert cfg.input.wide.reward == f"{{name}}.{make_zoo.PRIMARY}"


def test_inspect_leaves_unreadable_names_to_the_user(tmp_path):
    rows = [{"id": "1", "instruction": "q", "responses": [{"model": m, "response": "r", "reward": 1.0}
                                                          for m in ("gpt-4o", "qwen2-7b")]}]
    (tmp_path / "c.jsonl").write_text(json.dumps(rows[0]) + "\nnot json\n")
    insp = inspect_crowd([str(tmp_path / "c.jsonl")])
    assert insp.rows == 2 and insp.bad_rows == 1 and insp.first_bad.endswith("c.jsonl:2: not valid JSON "
                                                                              "(Expecting value at column 1)")
    text = proposed_config(insp, [str(tmp_path / "c.jsonl")])
    assert '- {name: "gpt-4o", family: "gpt-4o", size_b: 1}  # FILL IN family and size_b' in text
    assert '- {name: "qwen2-7b", family: "qwen2", size_b: 7}\n' in text
    (tmp_path / "p.yaml").write_text(text)
    assert load_select_config(str(tmp_path / "p.yaml"), {}, []).generators[0].family == "gpt-4o"



def test_inspect_counts_empty_answers_by_the_readers_rule():
    """An answer of invisible characters only is empty for the readers (core/blank.py): inspect says so too."""
    from crowdselect.crowd.inspect import Inspection, _count

    insp = Inspection([], "long", None, [])
    _count(insp, "g", pa.chunked_array([pa.array(["ok", "\u200b\u2060", " ", None])]), {})
    s = insp.generators["g"]
    assert (s.answers, s.empty_response, s.null_response) == (1, 2, 1)

def test_magpie_zoo_example_maps_the_papers_layout():
    root = Path(__file__).resolve().parents[2]
    cfg = load_select_config(str(root / "examples" / "magpie_zoo.yaml"), {}, [])
    names = [g.name for g in cfg.generators]
    families = [g.family for g in cfg.generators]
    assert [families.count(f) for f in dict.fromkeys(families)] == [3, 2, 3, 3, 3, 5]  # the authors' sizes
    assert [family_and_size(g.name) for g in cfg.generators] == [(g.family, g.size_b) for g in cfg.generators]
    keys = ("Skywork-Reward-Llama-3.1-8B", "ArmoRM-Llama3-8B-v0.1", "Skywork-Reward-Gemma-2-27B")
    cell = pa.struct([("content", pa.string()), *((k, pa.float64()) for k in keys)])
    schema = pa.schema([("uuid", pa.string()), ("instruction", pa.string()), *((n, cell) for n in names)])
    paths = resolve_wide(cfg.input.wide, schema_tree(schema), names, "zoo").paths
    assert paths["Qwen2.5-3B-Instruct"] == (("Qwen2.5-3B-Instruct", "content"),
                                            ("Qwen2.5-3B-Instruct", "Skywork-Reward-Llama-3.1-8B"))


def test_a_flat_column_of_an_unlisted_generator_is_still_named():
    flat = schema_tree(pa.schema([(c, pa.string()) for c in ("id", "instruction", "a_response", "z_response")]
                                 + [(c, pa.float64()) for c in ("a_reward", "z_reward")]))
    with pytest.raises(UserError, match="column 'z_response' holds model 'z', which the crowd config does not list"):
        resolve_wide(WideLayout(), flat, ["a"], "f")
    assert resolve_wide(WideLayout(ignore=["z"]), flat, ["a"], "f").paths == {"a": (("a_response",), ("a_reward",))}
