"""Evaluate a model with an LLM judge (`crowdselect eval`, MT-bench style) as a Ray job.

    ray job submit --address $RAY_ADDRESS --runtime-env jobs/runtime_env.yaml --no-wait \
        -- python jobs/eval.py examples/eval.yaml --out s3://my-bucket/crowdselect/eval/run1

Follow with `ray job logs -f <id>`, stop with `ray job stop <id>`, resubmit the same command to continue.
Arguments after the config are those of `crowdselect eval`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crowdselect import cli


def main(cfg: str, args: Sequence[str] = ()) -> int:
    """cfg: the eval config YAML; args: `--out DIR`, `key=value` ..."""
    return cli.main(["eval", cfg, *args])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python jobs/eval.py CONFIG.yaml [--out DIR] [key=value ...]")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
