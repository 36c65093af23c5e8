"""Generate, reward, score and select end to end (`crowdselect run`) as a Ray job; resumable.

    ray job submit --address $RAY_ADDRESS --runtime-env jobs/runtime_env.yaml --no-wait \
        -- python jobs/run.py examples/quickstart.yaml --out s3://my-bucket/crowdselect/runs/quickstart

Follow with `ray job logs -f <id>`, stop with `ray job stop <id>`. Resubmitting the same command (same --out)
resumes: finished stages and shards are kept, the rest is done, and the selection equals an uninterrupted
run's. Arguments after the config are those of `crowdselect run`: `--out DIR` and `key=value` overrides.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crowdselect import cli


def main(cfg: str, args: Sequence[str] = ()) -> int:
    """cfg: the run config YAML (path inside the job's working_dir); args: `--out DIR`, `key=value` ..."""
    return cli.main(["run", cfg, *args])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python jobs/run.py CONFIG.yaml [--out DIR] [key=value ...]")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
