"""Train config validation that runs before any launch: a resumed checkpoint must come from the run's own
storage unless the config trusts external ones (DeepSpeed unpickles checkpoints)."""

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.train.config import load_train_config


def load(tmp_path, *overrides):
    return load_train_config(None, str(tmp_path / "run"), ["data.path=rows.jsonl", *overrides])


def test_resume_from_outside_the_run_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "checkpoint_step4"
    with pytest.raises(ConfigError, match=r"checkpoint.resume_from: .*outside this run's storage.*trust_external"):
        load(tmp_path, f"checkpoint.resume_from={outside}")
    with pytest.raises(ConfigError, match="outside"):  # a path that only looks inside
        load(tmp_path, f"checkpoint.resume_from={tmp_path}/run/../elsewhere/ck")
    with pytest.raises(ConfigError, match="outside"):
        load(tmp_path, "checkpoint.resume_from=s3://someone-else/ck")


def test_resume_from_inside_the_run_or_trusted_is_accepted(tmp_path):
    inside = tmp_path / "run" / "checkpoints" / "train" / "checkpoint_step4"
    assert load(tmp_path, f"checkpoint.resume_from={inside}").checkpoint.resume_from == str(inside)
    shared = tmp_path / "shared-ckpts"
    cfg = load(tmp_path, f"checkpoint.storage_path={shared}", f"checkpoint.resume_from={shared}/train/ck")
    assert cfg.checkpoint.trust_external is False
    cfg = load(tmp_path, f"checkpoint.resume_from={tmp_path}/elsewhere/ck", "checkpoint.trust_external=true")
    assert cfg.checkpoint.trust_external is True
