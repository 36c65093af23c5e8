"""LocalDataset: the in-process executor does what the engine asks of a dataset (`Rows`), block by block,
lazily, with pyarrow and numpy only."""

import ast
import inspect
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crowdselect.runtime import rows
from crowdselect.runtime.local_data import LocalDataset, fetch, parallel_map
from crowdselect.runtime.rows import Rows, filter_rows


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


def test_numpy_batches_of_vectors_round_trip_as_tensor_columns():
    ds = LocalDataset([pa.table({"t": ["a", "b"], "l": [["x"], ["y", "z"]]})]).map_batches(
        lambda b: {**b, "e": np.arange(6, dtype=np.float32).reshape(2, 3)}, batch_format="numpy")
    got = ds.to_numpy_refs()[0]
    assert got["e"].shape == (2, 3) and got["e"].dtype == np.float32 and got["t"].tolist() == ["a", "b"]
    table = ds.take_batch(2, batch_format="pyarrow")
    assert np.stack(table.column("e").to_numpy(zero_copy_only=False)).shape == (2, 3)
    assert table.column("l").to_pylist() == [["x"], ["y", "z"]] and table.column("t").type == pa.string()
    again = ds.map_batches(lambda b: b, batch_format="numpy").materialize()  # a tensor column round-trips
    assert again.schema() == table.schema and again.to_numpy_refs()[0]["e"].tolist() == got["e"].tolist()


def test_filter_rows_by_a_pyarrow_predicate_treats_null_as_false():
    ds = LocalDataset(blocks())
    assert [r["id"] for r in filter_rows(ds, lambda b: pc.is_null(b["x"])).take_all()] == ["b"]
    both = filter_rows(ds, lambda b: pc.and_(pc.is_in(b["id"], value_set=pa.array(["a"])), pc.is_valid(b["x"])))
    assert [r["id"] for r in both.take_all()] == ["a", "a"]
    assert filter_rows(ds, lambda b: pc.greater(b["x"], 3.0)).count() == 2  # x null: not kept


def test_an_empty_block_never_reaches_a_function_and_gives_no_block():
    """Ray's batcher drops empty blocks; a numpy round trip of zero rows would lose the schema (a string
    column turns null, an (0, d) array cannot become a tensor column), so the in-process executor must
    drop them too. This is the long-table crash: a filter left empty blocks, the embedder was called on
    them, and take_batch met two schemas for one column."""
    calls = []

    def embed(batch):
        calls.append(len(batch["t"]))
        return {"t": batch["t"], "e": np.ones((len(batch["t"]), 3), np.float32)}

    empty = pa.table({"t": pa.array([], pa.string())})
    ds = LocalDataset([pa.table({"t": ["a", "b"]}), empty, pa.table({"t": ["c"]}), empty])
    out = ds.map_batches(embed, batch_format="numpy").materialize()
    assert calls == [2, 1] and out.num_blocks() == 2
    assert {str(b.schema) for b in out.iter_blocks()} == {str(out.schema())}
    assert out.take_batch(10, batch_format="numpy")["e"].shape == (3, 3)


def test_take_batch_passes_over_empty_blocks_of_another_schema():
    ds = LocalDataset([pa.table({"x": pa.array([], pa.null())}), pa.table({"x": [1.0, 2.0]}), pa.table({"x": [3.0]})])
    assert ds.take_batch(3, batch_format="pyarrow").column("x").to_pylist() == [1.0, 2.0, 3.0]
    assert ds.take_batch(2, batch_format="numpy")["x"].tolist() == [1.0, 2.0]


def test_rows_is_declared_once_and_both_executors_accept_every_call():
    """Every method of `Rows` exists on ray.data.Dataset and on LocalDataset, and each accepts the
    protocol's parameters by name (importing ray.data starts no Ray)."""
    import ray.data

    names = [n for n, v in vars(Rows).items() if callable(v) and not n.startswith("_")]
    assert len(names) >= 15
    for impl in (ray.data.Dataset, LocalDataset):
        for name in names:
            want = inspect.signature(getattr(Rows, name)).parameters
            have = inspect.signature(getattr(impl, name)).parameters
            takes_any = any(p.kind == p.VAR_KEYWORD for p in have.values())
            for p in want.values():
                if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    continue
                assert p.name in have or takes_any, f"{impl.__name__}.{name} lacks {p.name}"
    assert hasattr(LocalDataset([]).groupby("id"), "map_groups")


def test_the_in_process_executor_imports_no_private_ray_module():
    """Only public APIs: no `ray.data._internal...` and no Ray block accessor behind the numpy batches."""
    for module in (rows, __import__("crowdselect.runtime.local_data", fromlist=["x"])):
        tree = ast.parse(Path(module.__file__).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
        assert not [x for x in names if "_internal" in x or x == "BlockAccessor" or x.startswith("ray.data")]


def test_groups_come_in_key_order_and_union_sort_select_keep_rows():
    ds = LocalDataset(blocks())
    merged = ds.groupby("id").map_groups(lambda g: pa.table({"id": [g.column("id")[0].as_py()],
                                                             "n": [g.num_rows]}))
    assert merged.take_all() == [{"id": "a", "n": 2}, {"id": "b", "n": 1}, {"id": "c", "n": 1}, {"id": "d", "n": 1}]
    both = ds.select_columns(["id"]).union(ds.drop_columns(["x"]))
    assert both.count() == 10 and both.schema().names == ["id"]
    assert [r["id"] for r in ds.sort("id").take_all()] == ["a", "a", "b", "c", "d"]
    assert LocalDataset(blocks()).random_sample(1.0, seed=0).count() == 5
    assert not hasattr(LocalDataset, "filter")  # filters go through `filter_rows`, the same on both executors


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


def test_repartition_cuts_fixed_row_chunks_in_row_order():
    parts = [pa.table({"i": np.arange(a, b)}) for a, b in ((0, 3), (3, 3), (3, 10), (10, 11))]
    out = LocalDataset(parts).repartition(target_num_rows_per_block=4, strict=True)
    assert [b.column("i").to_pylist() for b in out.iter_blocks()] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]


def test_pool_quantiles_depend_on_the_rows_not_on_the_blocks():
    """Above the sketch's capacity a merged sketch depends on how values were grouped; the pool is cut into
    fixed chunks of rows first, so any block layout (Ray Data's by bytes, the reader's by lines) agrees."""
    from crowdselect.core import columns as C
    from crowdselect.select.job import SKETCH_CHUNK_ROWS, fit_pool_quantiles

    n = 2 * SKETCH_CHUNK_ROWS + 123
    values = np.random.default_rng(0).normal(size=(4, n))
    pool = pa.table({m: values[j] for j, m in enumerate([*C.METRICS, C.BEST_REWARD])})

    def quantiles(cut: int):
        ds = LocalDataset([pool.slice(a, cut) for a in range(0, n, cut)])
        return fit_pool_quantiles(ds, n, 1000, 500, moments=[C.STABILITY, C.BEST_REWARD])

    (q1, d1, m1), (q2, d2, m2) = quantiles(4096), quantiles(70_001)
    assert d1 == d2 == dict.fromkeys(C.METRICS, n)
    assert all(np.array_equal(q1[m][0], q2[m][0]) for m in C.METRICS)
    assert m1 == m2 and list(m1) == [C.STABILITY, C.BEST_REWARD] and m1[C.BEST_REWARD].n == n
    assert np.isclose(m1[C.BEST_REWARD].mean, values[3].mean()) and np.isclose(m1[C.BEST_REWARD].std, values[3].std())
