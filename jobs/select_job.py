"""Select a subset from a precomputed crowd (`crowdselect select`) as a Ray job.

    ray job submit --address $RAY_ADDRESS --runtime-env jobs/runtime_env.yaml --no-wait \
        -- python jobs/select_job.py examples/crowd.yaml --input s3://my-bucket/pools/crowd.parquet \
           --k 1000 --clusters 10 --out s3://my-bucket/crowdselect/select/run1

Follow with `ray job logs -f <id>`, stop with `ray job stop <id>`, resubmit the same command to redo it.
Arguments after the crowd config are those of `crowdselect select` (--input, --k, --clusters, --out, ...).
Named select_job.py, not select.py: run as a script, jobs/select.py would shadow the standard library's
`select` module, which subprocess and asyncio import.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crowdselect import cli


def main(cfg: str, args: Sequence[str] = ()) -> int:
    """cfg: the crowd config YAML; args: `--input PATH --k K --clusters C --out DIR`, key=value ..."""
    return cli.main(["select", "--config", cfg, *args])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python jobs/select_job.py CROWD.yaml --input PATH --out DIR [--k K] [...]")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
