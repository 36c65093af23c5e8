"""The selection summary's text (crowdselect.select.summary.summary_text) from hand-made facts."""

from __future__ import annotations

import numpy as np

from crowdselect.core import columns as C
from crowdselect.select.blocks import moments_block
from crowdselect.select.summary import Moments, SummaryFacts, summary_text


def facts(**kw) -> SummaryFacts:
    qs = np.array([0.0, 1.0, 2.0])
    refs = np.array([0.0, 0.5, 1.0])
    chosen = [{C.ID: f"r{i}", C.CLUSTER: i % 2, C.SCORE: 3.0 - i, C.INSTRUCTION: f"question {i}\nsecond line",
               C.BEST_RESPONSE: f"answer {i}\n" + "long " * 40, C.BEST_MODEL: "big", C.BEST_REWARD: 8.0 - i,
               C.DIFFICULTY: -5.0 + i, C.SEPARABILITY: 1.0 + i, C.STABILITY: 0.5} for i in range(4)]
    base = dict(counts={"input_rows": 12, "accepted_rows": 12, "rejected_rows": 0, "accepted_instructions": 4},
                strategy="crowdselect", weights=[1, 1, 2], k=4, clusters=2, out="/tmp/x", chosen=chosen,
                quantiles={m: (qs, refs) for m in C.METRICS}, defined={m: 4 for m in C.METRICS}, decisions=["n"],
                cluster_sizes={0: 2, 1: 2},
                metric_moments={C.SEPARABILITY: Moments(4, 2.5, 1.118)},
                generator_rewards={"small": Moments(4, 3.0, 1.0), "big": Moments(4, 7.0, 1.0)})
    base.update(kw)
    return SummaryFacts(**base)


def test_summary_shows_rewards_definedness_spread_and_examples_in_full():
    text = summary_text(facts())
    assert "metrics defined on: difficulty 4 of 4, separability 4 of 4, stability 4 of 4" in text
    assert "  small                              4        3        1" in text
    assert "  big                                4        7        1" in text
    # all 8 answers: mean 5, std sqrt(1 + 4) over the pooled moments
    assert "  all answers                        8        5    2.236" in text
    assert "per-instruction separability (reward variance across the crowd): mean 2.5, std 1.118" in text
    assert text.count("--- selected example") == 3 and "id r3" not in text
    assert "question 0\nsecond line" in text and "answer 0\n" + ("long " * 40).rstrip() in text  # in full
    assert "best answer by big (reward 8)" in text


def test_summary_without_crowd_rewards_or_clusters():
    text = summary_text(facts(generator_rewards={}, cluster_sizes=None, decisions=[]))
    assert "primary reward per generator" not in text and "clusters (quota" not in text and "notes:" not in text


def test_undefined_metric_is_shown_as_such():
    nan = np.full(3, np.nan)
    f = facts(defined={C.DIFFICULTY: 4, C.SEPARABILITY: 4, C.STABILITY: 0},
              quantiles={C.DIFFICULTY: (np.arange(3.0), np.linspace(0, 1, 3)),
                         C.SEPARABILITY: (np.arange(3.0), np.linspace(0, 1, 3)), C.STABILITY: (nan, nan)})
    line = next(x for x in summary_text(f).splitlines() if x.startswith("  stability"))
    assert "(undefined)" in line


def testmoments_block_skips_nan():
    import pyarrow as pa

    t = moments_block(pa.table({"a": [1.0, np.nan, 3.0]}), ["a"]).to_pylist()
    assert t == [{"name": "a", "n": 2, "s": 4.0, "ss": 10.0}]
    m = Moments.of(2, 4.0, 10.0)
    assert (m.n, m.mean, m.std) == (2, 2.0, 1.0)
    assert Moments.of(0, 0.0, 0.0).n == 0


def test_examples_neutralise_control_characters_and_clip_huge_text():
    """An instruction holding ANSI CSI/OSC sequences and a 50,000-character answer: the summary shows the
    escapes as text (no ESC, BEL or CR reaches the terminal) and at most DISPLAY_LIMIT characters of each."""
    from crowdselect.core.text import DISPLAY_LIMIT

    evil = "clear\x1b[2J\x1b]0;pwned\x07 done\rX\u202eabc\nnext\tline"
    chosen = [dict(facts().chosen[0], **{C.ID: "id\x1b[31m", C.INSTRUCTION: evil,
                                         C.BEST_RESPONSE: "y" * 50_000})]
    text = summary_text(facts(chosen=chosen))
    assert not any(c in text for c in "\x1b\x07\r\u202e")
    assert "clear\\x1b[2J\\x1b]0;pwned\\x07 done\\x0dX\\u202eabc\nnext\tline" in text  # layout kept
    assert "id id\\x1b[31m," in text
    assert "y" * DISPLAY_LIMIT + f"… ({50_000 - DISPLAY_LIMIT:,} more characters)" in text
    assert "y" * (DISPLAY_LIMIT + 1) not in text
