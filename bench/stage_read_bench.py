"""A pipeline stage's input read: crowdselect's `read_parquet` against Ray Data's default and plain pyarrow.

    .venv/bin/python bench/stage_read_bench.py                # 3 shards of 2 rows (the multi-node test's stage)
    .venv/bin/python bench/stage_read_bench.py --shards 64 --rows 500 --repeat 3

Every `crowdselect run` stage (each generator, each reward model) starts by reading its input shards with
Ray Data. Ray Data 2.60 reads Parquet footers on a pool of 32 FooterReader actors per read_parquet call, each
its own worker process, whatever the file count; `crowdselect.runtime.ray_setup.read_parquet` sizes that
pool to the files (one actor per 10). All three read the same files to Arrow, on one local Ray started once
(its start-up is not timed), each `--repeat` times; the median wall time is kept. The ratios are the result:
default / sized (how much the sizing saves) and sized / plain pyarrow (what Ray Data still costs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def write_shards(folder: Path, shards: int, rows: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    for s in range(shards):
        path = folder / f"shard-{s:05d}.parquet"
        pq.write_table(pa.table({"id": [f"{s}-{i}" for i in range(rows)],
                                 "instruction": [f"question {s}-{i}?" for i in range(rows)]}), path)
        paths.append(str(path))
    return paths


def timed(fn, repeat: int) -> tuple[float, int]:
    walls, n = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        walls.append(time.perf_counter() - t)
    return statistics.median(walls), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2, help="rows per shard")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import pyarrow.parquet as pq
    import ray

    from crowdselect.runtime.ray_setup import ensure_ray, read_parquet

    def rows_of(ds) -> int:
        return sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_shards(Path(tmp), args.shards, args.rows)
        ensure_ray()
        default, n1 = timed(lambda: rows_of(ray.data.read_parquet(paths)), args.repeat)
        sized, n2 = timed(lambda: rows_of(read_parquet(paths)), args.repeat)
        plain, n3 = timed(lambda: sum(pq.read_table(p).num_rows for p in paths), args.repeat)
    assert n1 == n2 == n3 == args.shards * args.rows, (n1, n2, n3)
    print(f"{args.shards} shards x {args.rows} rows, median of {args.repeat}:")
    print(f"  ray.data.read_parquet (default footer pool)  {default:7.2f} s")
    print(f"  crowdselect read_parquet (sized pool)        {sized:7.2f} s")
    print(f"  plain pyarrow read_table                     {plain:7.3f} s")
    print(f"default / sized: {default / sized:.1f}x   sized / plain: {sized / max(plain, 1e-6):.0f}x")


if __name__ == "__main__":
    main()
