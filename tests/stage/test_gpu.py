"""The checks bench/gpu_check.py times, run on a CUDA GPU at the tiny size: the student's training pieces
(ChatTokenizer, collate, load_student, the loop's step) against a plain loop over the same rows, and the
judge stage's label probabilities against a bare forward. Marked `gpu`: skipped without CUDA (conftest.py),
run wherever a GPU is visible; `bash bench/gpu_check.sh` is the full-size timing."""

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from bench import gpu_check

    s = gpu_check.settings(smoke=True)
    folder = tmp_path_factory.mktemp("gpu") / "model"
    gpu_check.build_model_folder(folder, s, "cuda")
    return gpu_check, s, folder


def test_training_pieces_on_cuda_match_a_plain_loop(tiny_model):
    gpu_check, s, folder = tiny_model
    rows, pad_id = gpu_check.training_rows(folder, s)
    ours = gpu_check.crowdselect_train(folder, rows, pad_id, s, "cuda")
    plain = gpu_check.plain_train(folder, rows, pad_id, s, "cuda")
    assert ours["tokens"] == plain["tokens"] > 0  # the same rows, the same loss tokens
    for run in (ours, plain):
        assert run["tokens_per_s"] > 0 and 0 < run["mfu"] < 1


def test_judge_scores_every_row_on_cuda(tiny_model):
    gpu_check, s, folder = tiny_model
    judge = gpu_check.judge_check(folder, s, "cuda")  # raises when a judge row fails
    assert judge["rows"] == s["judge_rows"] and judge["tokens"] > 0
    assert judge["helper_tokens_per_s"] > 0 and judge["bare_tokens_per_s"] > 0
