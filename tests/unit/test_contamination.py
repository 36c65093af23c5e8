"""Decontamination rules on hand-made texts and vectors (pure: no Ray, no model), the config and the eval sets."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from crowdselect.core.config import ConfigError, build
from crowdselect.core.errors import UserError
from crowdselect.select.contamination import EvalText, build_index, find_matches, words
from crowdselect.select.decontaminate import DecontaminateConfig, describe_sets, eval_sets, load_eval_texts

LONG = ("Develop a Python program that reads all the text files under a directory and returns top-5 words with "
        "the most number of occurrences.")
MID = "Write a C++ program to find the nth Fibonacci number using recursion."  # 12 words ("C++" is "c")
SHORT = "Can you parallelize it?"  # 4 words


def index(embeddings=None):
    texts = [EvalText("mt-bench", 121, 1, LONG), EvalText("mt-bench", 122, 1, MID), EvalText("mt-bench", 121, 2, SHORT)]
    return build_index(texts, n=13, min_words=8, embeddings=embeddings)


def test_words_follow_nemo_curators_normalisation():
    assert words("Top-5 words, DON'T\tstop!\nNow") == ["top5", "words", "dont", "stop", "now"]
    assert words("  ") == []


def test_the_index_holds_13_grams_whole_mid_texts_and_short_texts_for_exact_only():
    ix = index()
    long_words = words(LONG)
    assert " ".join(long_words[:13]) in ix.ngrams and " ".join(long_words[-13:]) in ix.ngrams
    assert len([g for g, i in ix.ngrams.items() if i == 0]) == len(long_words) - 12
    assert ix.ngrams[" ".join(words(MID))] == 1  # 12 words: one n-gram of its own length
    assert "can you parallelize it" in ix.exact and not any(i == 2 for i in ix.ngrams.values())
    assert ix.lengths == [13, 12]


def test_each_rule_flags_what_it_should_and_names_its_evidence():
    ix = index()
    pool = [LONG.upper(),  # exact after normalisation
            "Please help: " + LONG + " Thanks!",  # shares 13-grams
            "Hello. Write a C++ program to find the nth Fibonacci number using recursion, please",  # the mid text inside
            "can you PARALLELIZE it",  # exact copy of a short turn
            "Can you parallelize it with threads?",  # a short turn inside: exact only, so not flagged
            "Develop a Python program that reads all the text files under a folder",  # 12 shared words < 13
            "Unrelated question about bread."]
    got = find_matches(pool, None, ix, cosine=None)
    assert [m.rule if m else None for m in got] == ["exact", "ngram", "ngram", "exact", None, None, None]
    assert got[0].text == 0 and got[0].rules == ("exact", "ngram") and got[0].ngram == " ".join(words(LONG)[:13])
    assert got[1].ngram == " ".join(words(LONG)[:13]) and got[1].cosine is None
    assert got[2].text == 1 and got[2].ngram == " ".join(words(MID))
    assert got[3].text == 2 and got[3].ngram is None


def test_the_embedding_rule_compares_with_long_enough_eval_texts_only():
    E = np.eye(3, dtype=np.float32)  # one direction per eval text
    ix = index(E)
    X = np.array([[0.8, 0.6, 0], [0.6, 0.8, 0], [0, 0, 1], [0.5, 0.5, 0.7071]], np.float32)
    got = find_matches(["a", "b", "c", "d"], X, ix, cosine=0.75)
    assert [(m.rule, m.text, round(m.cosine, 3)) if m else None for m in got] == \
           [("embedding", 0, 0.8), ("embedding", 1, 0.8), None, None]  # text 2 (4 words) takes no part
    assert find_matches(["a"], X[:1], ix, cosine=0.81) == [None]  # the threshold is inclusive above it
    assert find_matches(["a"], X[:1], ix, cosine=0.8)[0] is not None
    exact = find_matches([SHORT], X[2:3], ix, cosine=0.75)[0]
    assert (exact.rule, exact.text, exact.cosine) == ("exact", 2, pytest.approx(1.0))  # evidence: cosine too


def test_matches_do_not_depend_on_how_rows_are_split_into_blocks():
    ix = index()
    pool = [LONG, "x " * 30, "Please help: " + LONG, MID, "nothing here"] * 3
    whole = find_matches(pool, None, ix, None)
    parts = [m for i in range(0, len(pool), 4) for m in find_matches(pool[i:i + 4], None, ix, None)]
    assert whole == parts


def test_config_checks_name_the_key():
    assert build(DecontaminateConfig, {"against": "mt-bench"}, file="t").against == ["mt-bench"]
    for bad, key in (({"cosine": 1.5}, "cosine"), ({"min_words": 20}, "min_words"), ({"ngram": 0}, "ngram"),
                     ({"against": [" "]}, "against[0]")):
        with pytest.raises(ConfigError, match=re.escape(f"t: {key}: ")):
            build(DecontaminateConfig, bad, file="t")
    assert build(DecontaminateConfig, {"cosine": None}, file="t").cosine is None


def test_eval_sets_of_an_experiments_eval_section():
    assert eval_sets({}) == ["mt-bench"]
    assert eval_sets({"questions": "q.jsonl", "pairwise": {"bootstrap": 10}}) == ["q.jsonl"]
    assert eval_sets({"mtbench": False, "pairwise": {"questions": "arena.jsonl"}, "proxy": {"instructions": "h.jsonl"}}) \
        == ["arena.jsonl", "h.jsonl"]


def test_eval_texts_from_mt_bench_fastchat_arena_hard_and_instruction_files(tmp_path):
    mt = load_eval_texts(["mt-bench"])
    assert len(mt) == 160 and mt[0].question_id == 81 and {t.turn for t in mt} == {1, 2}
    (tmp_path / "fastchat.jsonl").write_text(json.dumps({"question_id": 7, "category": "x", "turns": ["a b", "c"]}) + "\n")
    (tmp_path / "arena.jsonl").write_text(json.dumps({"uid": "u1", "prompt": "Solve this."}) + "\n")
    (tmp_path / "held.jsonl").write_text(json.dumps({"id": "h", "instruction": "Held out."}) + "\n")
    texts = load_eval_texts([str(tmp_path / f) for f in ("fastchat.jsonl", "arena.jsonl", "held.jsonl")])
    assert [(t.question_id, t.turn, t.text) for t in texts] == [(7, 1, "a b"), (7, 2, "c"), ("u1", 1, "Solve this."),
                                                                ("h", 1, "Held out.")]
    assert describe_sets(texts)[0] == {"set": str(tmp_path / "fastchat.jsonl"), "questions": 1, "texts": 2}
    with pytest.raises(UserError, match="missing.jsonl"):
        load_eval_texts([str(tmp_path / "missing.jsonl")])
    (tmp_path / "dup.jsonl").write_text('{"question_id": 1, "turns": ["a"]}\n{"question_id": 1, "turns": ["b"]}\n')
    with pytest.raises(UserError, match="dup.jsonl:2: duplicate question_id 1"):
        load_eval_texts([str(tmp_path / "dup.jsonl")])
