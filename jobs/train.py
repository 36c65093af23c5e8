"""Fine-tune a student on the selection (`crowdselect train`: Ray Train + DeepSpeed ZeRO or LoRA) as a Ray job.

    ray job submit --address $RAY_ADDRESS --runtime-env jobs/runtime_env.yaml --no-wait \
        -- python jobs/train.py examples/train.yaml --out s3://my-bucket/crowdselect/train/run1

Follow with `ray job logs -f <id>`, stop with `ray job stop <id>`. Resubmitting the same command resumes from
the last checkpoint under --out. Arguments after the config are those of `crowdselect train`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crowdselect import cli


def main(cfg: str, args: Sequence[str] = ()) -> int:
    """cfg: the training config YAML; args: `--out DIR`, `key=value` ..."""
    return cli.main(["train", cfg, *args])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python jobs/train.py CONFIG.yaml [--out DIR] [key=value ...]")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
