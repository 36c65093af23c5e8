"""LocalDataset: the in-process executor does what the engine asks of Ray Data, block by block, lazily."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.expressions import col

from crowdselect.runtime.local_data import LocalDataset, fetch, parallel_map


def blocks():
    return [pa.table({"id": ["c", "a", "b"], "x": [1.0, 2.0, None]}), pa.table({"id": ["a", "d"], "x": [4.0, 5.0]})]


def test_map_batches_slices_within_blocks_and_builds_a_class_once():
    made, seen = [], []

    class Double:
        def __init__(self, factor):
            made.append(factor)
            self.factor = factor

        def __call__(self, batch, plus):
            seen.append(len(batch["x"]))
            return {"id": batch["id"], "y": np.nan_to_num(batch["x"].astype(float)) * self.factor + plus}

    ds = LocalDataset(blocks()).map_batches(Double, batch_format="numpy", batch_size=2,
                                            fn_constructor_kwargs={"factor": 2}, fn_kwargs={"plus": 1},
                                            compute=object(), num_gpus=0)
    assert made == []  # lazy: nothing runs until consumed
    out = ds.materialize()
    assert made == [2] and seen == [2, 1, 2]  # batches of 2, never across the block boundary
    assert out.num_blocks() == 2
    assert [r["y"] for r in out.take_all()] == [3.0, 5.0, 1.0, 9.0, 11.0]


def test_numpy_batches_of_vectors_round_trip_as_ray_tensors():
    ds = LocalDataset([pa.table({"t": ["a", "b"]})]).map_batches(
        lambda b: {"t": b["t"], "e": np.arange(6, dtype=np.float32).reshape(2, 3)}, batch_format="numpy")
    got = ds.to_numpy_refs()[0]["e"]
    assert got.shape == (2, 3) and got.dtype == np.float32
    assert np.stack(ds.take_batch(2, batch_format="pyarrow").column("e").to_numpy(zero_copy_only=False)).shape == (2, 3)


def test_filter_by_ray_expression_treats_null_as_false():
    ds = LocalDataset(blocks())
    assert [r["id"] for r in ds.filter(expr=col("x").is_null()).take_all()] == ["b"]
    assert [r["id"] for r in ds.filter(expr=col("id").is_in(["a"]) & col("x").is_not_null()).take_all()] == ["a", "a"]
    assert ds.filter(expr=col("x") > 3.0).count() == 2


def test_groups_come_in_key_order_and_union_sort_select_keep_rows():
    ds = LocalDataset(blocks())
    merged = ds.groupby("id").map_groups(lambda g: pa.table({"id": [g.column("id")[0].as_py()],
                                                             "n": [g.num_rows]}))
    assert merged.take_all() == [{"id": "a", "n": 2}, {"id": "b", "n": 1}, {"id": "c", "n": 1}, {"id": "d", "n": 1}]
    both = ds.select_columns(["id"]).union(ds.drop_columns(["x"]))
    assert both.count() == 10 and both.schema().names == ["id"]
    assert [r["id"] for r in ds.sort("id").take_all()] == ["a", "a", "b", "c", "d"]
    assert LocalDataset(blocks()).random_sample(1.0, seed=0).count() == 5


def test_write_parquet_one_file_per_non_empty_block(tmp_path):
    LocalDataset([*blocks(), pa.table({"id": pa.array([], pa.string()), "x": pa.array([], pa.float64())})]
                 ).write_parquet(str(tmp_path / "out.parquet"))
    assert sorted(p.name for p in (tmp_path / "out.parquet").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 5


def test_parallel_map_keeps_block_order_and_fetch_passes_values_through():
    many = [pa.table({"i": [i]}) for i in range(20)]
    out = parallel_map(LocalDataset(many), lambda b: b.append_column("j", pa.array([b["i"][0].as_py() * 2])), 2)
    assert [r["j"] for r in out.take_all()] == [2 * i for i in range(20)]
    tables = out.to_arrow_refs()
    assert fetch(tables) is tables


def test_a_large_materialised_dataset_spills_to_disk_and_reads_back_the_same(monkeypatch):
    from crowdselect.runtime import local_data

    monkeypatch.setattr(local_data, "SPILL_BYTES", 1)  # spill from the first block on
    many = [pa.table({"i": list(range(k, k + 3)), "s": ["x" * k] * 3}) for k in range(5)]
    ds = LocalDataset(lambda: iter(many)).materialize()
    assert isinstance(ds._blocks, local_data._Spilled) and ds.num_blocks() == 5
    assert [b.to_pydict() for b in ds.iter_blocks()] == [b.to_pydict() for b in many]
    folder = ds._blocks._dir.name
    del ds
    import gc
    import os

    gc.collect()
    assert not os.path.exists(folder)
