"""Training settings against the data size (crowdselect/train/schedule.py): scaled warmup, errors for runs
that stop inside warmup or before one epoch."""

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.train.schedule import check_schedule


def test_warmup_longer_than_run_is_scaled_and_stated():
    s = check_schedule(150, 40, 40, 40, None)
    assert s.warmup_steps == 4
    assert s.notice == "optim.warmup_steps 150 >= 40 total steps: using 4 (10% of the run)"


def test_warmup_equal_to_run_is_scaled_too():
    assert check_schedule(4, 4, 4, 4, None).warmup_steps == 0


def test_reasonable_warmup_is_kept_without_notice():
    s = check_schedule(150, 1500, 1500, 500, None)
    assert (s.warmup_steps, s.notice) == (150, None)


def test_max_steps_inside_warmup_is_an_error():
    with pytest.raises(ConfigError, match=r"optim.max_steps 10: the run stops at step 10, inside the 150"):
        check_schedule(150, 1500, 10, 5, 10)


def test_max_steps_before_one_epoch_is_an_error():
    with pytest.raises(ConfigError, match=r"optim.max_steps 20 < 50 steps in one epoch"):
        check_schedule(5, 150, 20, 50, 20)


def test_max_steps_past_warmup_and_epoch_is_fine():
    assert check_schedule(5, 150, 60, 50, 60).warmup_steps == 5
