"""Pure parts of the reward stage and the baselines: token budgets, judge score math, tag selection, configs,
MT-bench data. Hand-computed expectations; no models, no Ray."""

import math

import numpy as np
import pytest

from crowdselect.baselines.tag_diversity import select_by_tags
from crowdselect.baselines.tags import parse_tags
from crowdselect.core.config import ConfigError, build
from crowdselect.eval import questions as mtbench
from crowdselect.reward.config import RewardSpec, build_reward_specs, primary_reward
from crowdselect.reward.rows import RowError, score_rows
from crowdselect.reward.scoring import expected_score, label_probs
from crowdselect.runtime.lm.batches import length_batches
from crowdselect.runtime.lm.budget import head, split_budget, tail
from crowdselect.runtime.lm.labels import LabelTrie

# ---- token budgets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_i, n_r, budget, share, expected", [
    (10, 10, 100, 0.5, (10, 10)),    # fits: untouched
    (80, 80, 100, 0.5, (50, 50)),    # both long: the share decides
    (80, 80, 100, 0.25, (25, 75)),
    (80, 10, 100, 0.5, (80, 10)),    # short response leaves its room
    (10, 300, 100, 0.5, (10, 90)),   # short instruction leaves its room
    (5, 5, 0, 0.5, (0, 0)),
])
def test_split_budget(n_i, n_r, budget, share, expected):
    keep = split_budget(n_i, n_r, budget, share)
    assert keep == expected
    assert sum(keep) <= budget


def test_head_and_tail():
    ids = [1, 2, 3, 4, 5]
    assert head(ids, 2) == [1, 2] and tail(ids, 2) == [4, 5] and tail(ids, 0) == []


def test_length_batches_cover_every_row_once_and_respect_limits():
    lengths = [7, 1, 3, 3, 9, 2, 50]
    batches = length_batches(lengths, max_rows=3, max_tokens=20)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [1, 5, 2]  # shortest first, ties by index
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 20
    assert [6] in batches  # longer than max_tokens: alone


def test_score_rows_isolates_failing_rows():
    """Wiring of per-row error capture: a plain function stands in for the model."""
    texts = ["aa", None, "boom", "b", "cccc"]
    calls = []

    def encode(i):
        if texts[i] is None:
            raise RowError("no response")
        return texts[i]

    def fn(items):
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("engine fell over")
        return [len(t) for t in items]

    results, errors = score_rows(len(texts), encode, len, fn, max_rows=8, max_tokens=100, stage="rm")
    assert results == [2, None, None, 1, 4]
    assert errors == [None, "no response", "rm: RuntimeError: engine fell over", None, None]
    assert calls[0] == ["b", "aa", "boom", "cccc"]  # one length-sorted micro-batch, then row by row
    assert len(calls) == 1 + 4


# ---- judge score math ------------------------------------------------------------------------------------

# SmolLM2-like labels 1..10 where "10" is the two tokens "1", "0": ids "1"=11, ..., "9"=19, "0"=10
SPLIT_TEN = LabelTrie(values=tuple(range(1, 11)), labels=tuple((10 + v,) for v in range(1, 10)) + ((11, 10),))


def test_trie_steps_and_children():
    assert SPLIT_TEN.steps() == [(), (11,)]
    assert SPLIT_TEN.children(()) == list(range(11, 20))
    assert SPLIT_TEN.children((11,)) == [10]
    single = LabelTrie(values=(0, 1, 2), labels=((5,), (6,), (7,)))
    assert single.steps() == [()] and single.max_depth == 1


def test_split_ten_probabilities_by_hand():
    # P("1") = 0.5, P("7") = 0.3, other first digits 0.025 each (7 of them) -> 0.975 on digits;
    # after "1": P("0") = 0.6  =>  P(10) = 0.3, P(1) = 0.5 * 0.4 = 0.2
    first = np.full((1, 9), 0.025)
    first[0, 0], first[0, 6] = 0.5, 0.3
    probs = label_probs(SPLIT_TEN, {(): first, (11,): np.array([[0.6]])})
    assert probs[0, 9] == pytest.approx(0.3)
    assert probs[0, 0] == pytest.approx(0.2)
    assert probs[0, 6] == pytest.approx(0.3)
    score, mass = expected_score(SPLIT_TEN, probs)
    expect = (1 * 0.2 + 7 * 0.3 + 10 * 0.3 + 0.025 * (2 + 3 + 4 + 5 + 6 + 8 + 9)) / 0.975
    assert mass[0] == pytest.approx(0.975)
    assert score[0] == pytest.approx(expect)


def test_expected_score_rows_and_zero_mass():
    trie = LabelTrie(values=(0, 5), labels=((3,), (4,)))
    score, mass = expected_score(trie, np.array([[1.0, 0.0], [0.25, 0.25], [0.0, 0.0]]))
    assert score[0] == 0.0 and score[1] == pytest.approx(2.5) and math.isnan(score[2])
    assert mass.tolist() == [1.0, 0.5, 0.0]


def test_label_trie_rejects_duplicate_labels():
    with pytest.raises(ValueError):
        LabelTrie(values=(1, 2), labels=((3,), (3,)))


# ---- tags ------------------------------------------------------------------------------------------------

def test_select_by_tags_complexity_first_then_coverage():
    tags = [["a"], ["a", "b", "c"], ["c", "d"], ["d"], [], ["e"]]
    # order by tag count: 1 (3 tags), 2 (2), then 0, 3, 5 (1 each, by index), then 4 (none)
    # pass 1: 1 {a,b,c}; 2 adds d; 0 {a} no; 3 {d} no; 5 adds e  -> [1, 2, 5]
    # pass 2 (coverage reset): 0, then 3 -> [1, 2, 5, 0, 3]; untagged last -> 4
    assert select_by_tags(tags, np.zeros(6), 6).tolist() == [1, 2, 5, 0, 3, 4]
    assert select_by_tags(tags, np.zeros(6), 3).tolist() == [1, 2, 5]


def test_select_by_tags_scores_break_ties_and_k_is_clipped():
    tags = [["x"], ["y"], ["x"], ["y"]]
    scores = np.array([0.1, 0.9, np.nan, 0.5])
    # all one tag: order by score desc (NaN last): 1, 3, 0, 2; pass 1 takes 1 (y), 0 (x)
    assert select_by_tags(tags, scores, 2).tolist() == [1, 0]
    assert select_by_tags(tags, scores, 10).tolist() == [1, 0, 3, 2]
    assert select_by_tags([], np.zeros(0), 3).tolist() == []


def test_select_by_tags_bad_input():
    with pytest.raises(ValueError):
        select_by_tags([["a"]], np.zeros(2), 1)
    with pytest.raises(ValueError):
        select_by_tags([["a"]], np.zeros(1), -1)


def test_parse_tags_formats():
    assert parse_tags(" Math, arithmetic;  word problem\n") == ["math", "arithmetic", "word problem"]
    assert parse_tags('[{"tag": "Coding", "explanation": "x"}, {"tag": "python"}]') == ["coding", "python"]
    assert parse_tags("1. Poetry\n2) Ocean imagery\n- ocean imagery") == ["poetry", "ocean imagery"]
    assert parse_tags("a, b, c, d, e, f, g") == ["a", "b", "c", "d", "e"]
    assert parse_tags("this is far too long to be a tag, ok") == ["ok"]
    assert parse_tags("") == [] and parse_tags('"just text"') == ["just text"]


# ---- configs ---------------------------------------------------------------------------------------------

def test_reward_spec_errors_name_file_and_key():
    with pytest.raises(ConfigError, match=r"run.yaml: rewards\[0\].kind: must be one of classifier, judge"):
        build_reward_specs([{"name": "a", "model": "m", "kind": "oracle"}], file="run.yaml")
    with pytest.raises(ConfigError, match=r"run.yaml: rewards\[1\].max_length: expected an integer"):
        build_reward_specs([{"name": "a", "model": "m"}, {"name": "b", "model": "m", "max_length": "long"}],
                           file="run.yaml")
    with pytest.raises(ConfigError, match="classifier reward 'a' runs on hf"):
        build(RewardSpec, {"name": "a", "model": "m", "backend": "vllm"}, file="run.yaml")
    with pytest.raises(ConfigError, match="prompt_share"):
        build(RewardSpec, {"name": "a", "model": "m", "prompt_share": 1.5}, file="run.yaml")


def test_exactly_one_primary_reward():
    one = build_reward_specs([{"name": "a", "model": "m"}], file="f.yaml")
    assert one[0].primary and primary_reward(one).name == "a"
    two = build_reward_specs([{"name": "a", "model": "m"}, {"name": "b", "model": "m", "primary": True}],
                             file="f.yaml")
    assert primary_reward(two).name == "b"
    with pytest.raises(ConfigError, match="exactly one reward model needs `primary: true`"):
        build_reward_specs([{"name": "a", "model": "m"}, {"name": "b", "model": "m"}], file="f.yaml")
    with pytest.raises(ConfigError, match="listed twice"):
        build_reward_specs([{"name": "a", "model": "m"}, {"name": "a", "model": "n"}], file="f.yaml")


# ---- MT-bench data ---------------------------------------------------------------------------------------

def test_mtbench_data_from_the_package():
    qs = mtbench.load_questions()
    assert len(qs) == 80 and all(len(q["turns"]) == 2 for q in qs)
    assert len(mtbench.load_questions(categories=["math"], limit=3)) == 3
    spread = mtbench.load_questions(per_category=2)
    assert len(spread) == 16 and len({q["category"] for q in spread}) == 8
    assert [q["question_id"] for q in mtbench.load_questions(per_category=1, limit=2)] == [81, 91]
    refs = mtbench.load_reference_answers()
    prompts = mtbench.load_judge_prompts()
    for (turn, _ref), p in prompts.items():
        assert "{instruction}" in p["prompt"] and "{response}" in p["prompt"]
        assert "short explanation" not in p["prompt"] + p["system"]
        assert ("{question_1}" in p["prompt"]) == (turn == 2)
    math_q = next(q for q in qs if q["category"] == "math")
    rows = mtbench.judge_rows(math_q, ["a1", "a2"], None, refs, prompts, turns=2)
    assert [r["turn"] for r in rows] == [1, 2]
    assert rows[0]["ref_answer_1"] == refs[math_q["question_id"]][0]
    assert "{ref_answer_1}" in rows[0]["judge_prompt"] and rows[1]["response"] == "a2"
    writing = mtbench.judge_rows(qs[0], ["only one"], "turn 2: boom", refs, prompts, turns=2)
    assert writing[1]["response"] is None and writing[0]["ref_answer_1"] == ""


def test_mtbench_bad_files_name_file_and_line(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "turns": ["hi"]}\nnot json\n')
    with pytest.raises(Exception, match=r"q.jsonl:2: not valid JSON"):
        mtbench.load_questions(str(bad))
    bad.write_text('{"question_id": 1, "turns": []}\n')
    with pytest.raises(Exception, match=r"q.jsonl:1: question 1: `turns` must be a non-empty list"):
        mtbench.load_questions(str(bad))
    with pytest.raises(Exception, match="no question of category 'poetry'"):
        mtbench.load_questions(categories=["poetry"])
