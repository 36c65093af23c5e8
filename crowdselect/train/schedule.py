"""Training settings checked against the data size, before any worker starts. Pure: no Ray, no torch.

The paper's settings (150 warmup steps, 3 epochs) are sized for 1,000 rows on 8 GPUs. On a small selection
they silently do nothing: a 4-step run with 150 warmup steps peaks at 4/150 of the learning rate and the
student's weights barely move. `check_schedule` turns such settings into either a stated fix or an error:

- warmup_steps >= the run's total steps: warmup is scaled to 10% of the run (rounded down) and the run
  says so ("warmup_steps 150 >= 4 total steps: using 0 (10% of the run)"). A scaled default, not an error,
  because the paper's config should stay usable at any k; the notice is printed and kept in data_report.json.
- max_steps stops this launch before warmup ends (the learning rate never reaches `optim.lr`): error.
- max_steps stops this launch before one epoch of the selection is seen: error — a comparison of
  selections is meaningless when the student never sees part of each one.

The learning rate logged at step s is the one before that step's update (train/loop.py), and transformers'
cosine schedule gives lr * s / warmup there, so the configured lr is reached at step warmup + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from crowdselect.core.config import ConfigError

WARMUP_FRACTION = 0.1


@dataclass(frozen=True)
class Schedule:
    warmup_steps: int  # the warmup the run uses (maybe scaled from the config's)
    notice: str | None  # what was changed and why, for the log and data_report.json


def check_schedule(warmup_steps: int, total_steps: int, steps: int, steps_per_epoch: int,
                   max_steps: int | None) -> Schedule:
    """The warmup to use, given the run's optimizer steps (`total_steps` over all epochs, `steps` in this
    launch after `max_steps`, `steps_per_epoch` ≥ 1 for one pass over the data). Raises ConfigError naming
    the key when this launch cannot reach the configured learning rate or does not see every row once.

    >>> check_schedule(150, 4, 4, 4, None)
    Schedule(warmup_steps=0, notice='optim.warmup_steps 150 >= 4 total steps: using 0 (10% of the run)')
    >>> check_schedule(10, 300, 300, 100, None).notice is None
    True
    """
    notice = None
    if warmup_steps >= total_steps:
        scaled = int(total_steps * WARMUP_FRACTION)
        notice = (f"optim.warmup_steps {warmup_steps} >= {total_steps} total steps: using {scaled} "
                  f"({WARMUP_FRACTION:.0%} of the run)")
        warmup_steps = scaled
    if max_steps is not None and steps <= warmup_steps:
        raise ConfigError(f"optim.max_steps {max_steps}: the run stops at step {steps}, inside the "
                          f"{warmup_steps} warmup steps, so the learning rate never reaches optim.lr; "
                          "raise max_steps or lower warmup_steps")
    if max_steps is not None and steps < steps_per_epoch:
        raise ConfigError(f"optim.max_steps {max_steps} < {steps_per_epoch} steps in one epoch of the data: "
                          "the student would not see every selected row; raise max_steps or drop it")
    return Schedule(warmup_steps, notice)
