"""The decontamination defaults on the labelled set (tests/fixtures/contamination_labelled.jsonl) with the real
MiniLM embedder against MT-bench: what bench/decontam_labelled.py prints, held as a floor. Verbatim copies and
paraphrases are contaminated; same-topic instructions asking for another task and real ShareGPT ones are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crowdselect.select.contamination import build_index, find_matches
from crowdselect.select.decontaminate import DecontaminateConfig, load_eval_texts
from crowdselect.select.embed import Embedder

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "contamination_labelled.jsonl"
POSITIVE = ("verbatim", "paraphrase")


@pytest.fixture(scope="module")
def labelled():
    rows = [json.loads(x) for x in FIXTURE.read_text().splitlines()]
    cfg = DecontaminateConfig(against=["mt-bench"])
    texts = load_eval_texts(cfg.against)
    emb = Embedder("pkg:all-minilm-l6-v2")
    index = build_index(texts, n=cfg.ngram, min_words=cfg.min_words, embeddings=emb.embed([t.text for t in texts]))
    matches = find_matches([r["text"] for r in rows], emb.embed([r["text"] for r in rows]), index, cfg.cosine)
    return rows, matches, index


def rates(rows, matches, rule=None):
    hit = [m is not None and (rule is None or rule in m.rules) for m in matches]
    truth = [r["label"] in POSITIVE for r in rows]
    tp = sum(h and t for h, t in zip(hit, truth, strict=True))
    return tp / max(1, sum(hit)), tp / sum(truth)


def test_every_rule_is_precise_and_together_they_find_copies_and_paraphrases(labelled):
    rows, matches, _ = labelled
    table = {rule: rates(rows, matches, rule) for rule in ("exact", "ngram", "embedding", None)}
    print("\n" + "\n".join(f"{rule or 'any':<10} precision {p:.3f} recall {r:.3f}" for rule, (p, r) in table.items()))
    assert all(p == 1.0 for p, _ in table.values())  # nothing same-topic or unrelated is flagged
    assert table["embedding"][1] >= 0.95 and table[None][1] >= 0.95
    missed = [r for r, m in zip(rows, matches, strict=True) if r["label"] == "verbatim" and m is None]
    assert missed == []  # every verbatim copy, short second turns included (the exact rule)


def test_a_flagged_row_names_the_question_it_copies(labelled):
    rows, matches, index = labelled
    for r, m in zip(rows, matches, strict=True):
        if m is not None:
            got = index.texts[m.text]
            assert (got.question_id, got.turn) == (r["question_id"], r["turn"]), r["text"]
