"""Arena-Hard-Auto's scoring (crowdselect/eval/arena_hard.py) on verdict sequences worked out by hand: labels
read as gen_judgment.py reads them, the model's side in each game (baseline first in game 1), strong verdicts
weighted 3, a question with an unreadable game dropped whole, the Bradley-Terry win rate and its bootstrap
over battles. Pure, fast."""

import numpy as np
import pytest

from crowdselect.eval import arena_hard as ah


@pytest.mark.parametrize("text, label, again", [
    ("I think B is better.\n\nMy final verdict is: [[B>>A]]", "B>>A", False),
    ("My final verdict is tie: [[A=B]]", "A=B", False),
    ("Assistant B is slightly better: [[B>A]] ... so [[B>A]]", "B>A", False),  # the same label twice
    ("no verdict yet", None, True),  # asked to go on
    ("[[A>B]] or maybe [[B>A]]", None, False),  # two labels: unreadable, not asked again (v0.1 get_score)
    (None, None, True),
])
def test_labels_are_read_as_arena_hard_reads_them(text, label, again):
    assert ah.read_label(text) == (label, again)


def test_the_model_is_b_in_game_1_and_a_in_game_2():
    assert ah.model_result(1, "A>B") == (0.0, False)  # the baseline (A) is better
    assert ah.model_result(1, "B>>A") == (1.0, True)
    assert ah.model_result(2, "A>>B") == (1.0, True)
    assert ah.model_result(2, "B=A") == (0.5, False)
    assert ah.model_result(1, "A<<B") == (1.0, True) and ah.model_result(2, "B<A") == (1.0, False)
    assert ah.model_result(1, "A>>>B") is None and ah.model_result(2, None) is None


# q1: game 1 [[B>>A]] (the model, B, much better: 3 wins), game 2 [[A>B]] (the model, A, better: 1 win)
# q2: game 1 [[A>B]] (the baseline better: 1 loss), game 2 [[B>A]] (the baseline, B, better: 1 loss)
# q3: game 1 [[A=B]] (1 tie), game 2 [[A>>B]] (3 wins)
# q4: game 1 [[B>A]], game 2 unreadable -> the question is dropped whole
# q5: game 1 [[A<<B]] (A much worse: the model wins 3), game 2 [[B<A]] (B worse: the model, A, wins 1)
GAMES = [("q1", 1, "B>>A"), ("q1", 2, "A>B"), ("q2", 1, "A>B"), ("q2", 2, "B>A"), ("q3", 1, "A=B"),
         ("q3", 2, "A>>B"), ("q4", 1, "B>A"), ("q4", 2, None), ("q5", 1, "A<<B"), ("q5", 2, "B<A")]
BY_HAND = [1, 1, 1, 1, 0, 0, 0.5, 1, 1, 1, 1, 1, 1, 1]  # the battles, in question and game order


def test_battles_weight_strong_verdicts_and_drop_a_pair_with_an_unreadable_game():
    outcomes, counts = ah.battles(GAMES, weight=3)
    assert outcomes.tolist() == BY_HAND
    assert counts == {"questions": 5, "pairs": 4, "dropped": 1}
    weight_1, _ = ah.battles(GAMES, weight=1)
    assert weight_1.tolist() == [1, 1, 0, 0, 0.5, 1, 1, 1]


def test_score_and_interval_match_a_hand_computation():
    # With one model against the baseline, the Bradley-Terry win rate is the share of battles won (a tie half):
    # 11.5 of 14. The interval: the same share on each bootstrap resample of the 14 battles, 2.5th/97.5th pct.
    result = ah.score(GAMES, weight=3, n_boot=200, seed=5)
    assert result["win_rate"] == pytest.approx(11.5 / 14, abs=1e-4)
    battles = np.array(BY_HAND, dtype=float)
    rng = np.random.default_rng(5)
    shares = [battles[rng.integers(0, 14, size=14)].mean() for _ in range(200)]
    lo, hi = np.percentile(shares, [2.5, 97.5])
    assert result["ci95"] == [pytest.approx(lo, abs=1e-3), pytest.approx(hi, abs=1e-3)]
    assert lo < 11.5 / 14 < hi
    assert (result["battles"], result["pairs"], result["dropped"], result["games"]) == (14, 4, 1, 10)
    assert result["labels"]["unreadable"] == 1 and result["labels"]["A>B"] == 2


def test_bradley_terry_fit_is_the_win_share_and_one_sided_battles_are_its_limit():
    for outcomes in ([1, 0, 0.5], [1, 1, 1, 0], [0, 0, 0.5, 0.5, 1]):
        assert ah.bt_win_rate(np.array(outcomes, dtype=float)) == pytest.approx(np.mean(outcomes), abs=1e-5)
    assert ah.bt_win_rate(np.array([1.0, 1.0])) == 1.0 and ah.bt_win_rate(np.array([0.0])) == 0.0
    assert ah.bt_win_rate(np.array([0.5, 0.5])) == pytest.approx(0.5)
    only_wins = ah.score([("q", 1, "B>A"), ("q", 2, "A>B")], n_boot=20)
    assert only_wins["win_rate"] == 1.0 and only_wins["ci95"] == [1.0, 1.0]
    nothing = ah.score([("q", 1, None), ("q", 2, "A>B")], n_boot=20)
    assert nothing["win_rate"] is None and nothing["ci95"] == [None, None] and nothing["dropped"] == 1


def test_the_prompt_is_arena_hards():
    assert ah.SYSTEM_PROMPT.startswith("Please act as an impartial judge")
    assert ah.SYSTEM_PROMPT.endswith('Example output: "My final verdict is tie: [[A=B]]".')
    prompt = ah.user_prompt("What is 2+2?", "4", "5")
    assert prompt == ("<|User Prompt|>\nWhat is 2+2?\n\n<|The Start of Assistant A's Answer|>\n4\n"
                      "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n5\n"
                      "<|The End of Assistant B's Answer|>")
