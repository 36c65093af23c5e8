"""End-to-end benchmark of `crowdselect select` against the plain script a user would write: ratios.

    .venv/bin/python bench/e2e_bench.py                  # 100K x 19 end to end, wide Parquet ingest, embedding
    .venv/bin/python bench/e2e_bench.py --sizes 100000,1000000   # + 1M x 19 (slow: minutes)
    .venv/bin/python bench/e2e_bench.py --only e2e       # or: ingest, embed

1. End to end: a canonical JSONL crowd of N x 19 (bench.synthetic), then, back to back,
   `crowdselect select --no-cluster --k 1000` and `bench/plain_select.py` (json + numpy + scipy + sklearn),
   each as a subprocess. Wall time, and peak memory as the largest sum of RSS over the process tree (sampled
   every 0.1 s: Ray's workers are not the command's children). Targets: wall ratio <= 2.0 at 100K and
   <= 1.0 at 1M; the 1M peak within 2x of the 100K peak. Also the overlap of the two selections.
2. Wide Parquet ingest (the paper's pool layout, 100K x 19): `read_crowd` rows/s in this process (what
   `select` does on one machine) and on a running Ray (target >= 50K rows/s), and the ratio to a bare
   `pyarrow.parquet.read_table` of the same file.
3. Embedding: the Embedder stage (in this process, and on Ray Data with one actor) vs sentence-transformers'
   own `encode` on the same texts, throughput ratio (target >= 0.9).
Absolute times on a shared machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo root: bench.synthetic


def run_measured(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak tree RSS in MiB) of a command; raises when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {err[-2000:]}")
    return wall, peak / 2**20


def e2e(n: int, folder: Path, env: dict) -> dict:
    from bench import synthetic

    crowd, cfg = folder / f"crowd{n}.jsonl", folder / "crowd.yaml"
    cfg.write_text(synthetic.crowd_yaml())
    synthetic.write_canonical_jsonl(crowd, n, seed=1)
    ours_out, plain_out = folder / f"sel{n}", folder / f"plain{n}.jsonl"
    ours = run_measured([sys.executable, "-m", "crowdselect.cli", "select", "--config", str(cfg), "--input",
                         str(crowd), "--out", str(ours_out), "--no-cluster", "--k", "1000"], env)
    plain = run_measured([sys.executable, str(ROOT / "bench" / "plain_select.py"), str(cfg), str(crowd),
                          str(plain_out), "--k", "1000"], env)
    a = [json.loads(x)["id"] for x in (ours_out / "selected.jsonl").read_text().splitlines()]
    b = [json.loads(x)["id"] for x in plain_out.read_text().splitlines()]
    crowd.unlink()
    return {"n": n, "ours_s": ours[0], "plain_s": plain[0], "ours_mib": ours[1], "plain_mib": plain[1],
            "same_ids": len(set(a) & set(b)), "same_order": a == b}


def ingest_part(n: int, folder: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.synthetic import PAPER_CROWD, rewards
    from crowdselect.crowd.config import InputConfig
    from crowdselect.crowd.read import read_crowd

    R = rewards(n, PAPER_CROWD, seed=2)
    cols = {"id": pa.array([f"w{i:07d}" for i in range(n)]), "instruction": pa.array([f"question {i}?" for i in range(n)])}
    for j, (g, _, _) in enumerate(PAPER_CROWD):
        cols[f"{g}_response"] = pa.array([f"[{g}] answer {i}" for i in range(n)])
        cols[f"{g}_reward"] = pa.array(R[:, j])
    path = folder / "wide.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=50_000)
    gens = [g for g, _, _ in PAPER_CROWD]
    t0 = time.perf_counter()
    assert pq.read_table(path).num_rows == n
    t_arrow = time.perf_counter() - t0
    times = {}
    for executor in ("local", "ray"):
        t0 = time.perf_counter()
        ing = read_crowd(InputConfig(path=[str(path)]), gens, local=executor == "local")
        times[executor] = time.perf_counter() - t0
        assert ing.counts.accepted == n, ing.counts.accepted
    return {"n": n, "local_s": times["local"], "ray_s": times["ray"], "arrow_s": t_arrow}


def embed_part(n: int) -> dict:
    import ray
    from sentence_transformers import SentenceTransformer

    from bench.synthetic import sharegpt_instructions
    from crowdselect.runtime.models import resolve_model

    texts = sharegpt_instructions(n)
    path = resolve_model("pkg:all-minilm-l6-v2")
    SentenceTransformer(path, device="cpu")  # warms the page cache and imports for both sides
    t0 = time.perf_counter()  # what a user would write: load the model, encode (model load counted on both sides)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = 256
    st.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    t_st = time.perf_counter() - t0
    del st
    import pyarrow as pa

    from crowdselect.generate.spec import GeneratorSpec
    from crowdselect.runtime.local_data import LocalDataset
    from crowdselect.select.config import SelectConfig
    from crowdselect.select.job import embed

    cfg = SelectConfig(generators=[GeneratorSpec(name="a", family="a", size_b=1)])  # the default embedder
    times = {}
    for executor, ds in (("local", LocalDataset([pa.table({"instruction": texts})])),
                         ("ray", ray.data.from_items([{"instruction": t} for t in texts]).materialize())):
        t0 = time.perf_counter()
        out = embed(ds, cfg, local=executor == "local")  # as `select` wires it; model load included
        times[executor] = time.perf_counter() - t0
        assert out.count() == len(texts)
    return {"n": len(texts), "local_s": times["local"], "ray_s": times["ray"], "st_s": t_st}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000", help="comma-separated crowd sizes for the end-to-end part")
    ap.add_argument("--wide-rows", type=int, default=100_000)
    ap.add_argument("--embed-rows", type=int, default=2000)
    ap.add_argument("--only", choices=["e2e", "ingest", "embed"])
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "e2e"):
            peaks = {}
            for n in (int(x) for x in args.sizes.split(",")):
                r = e2e(n, folder, env)
                peaks[n] = r["ours_mib"]
                print(f"\nend to end, {n:,} x 19 canonical JSONL, --no-cluster --k 1000 "
                      f"(load {os.getloadavg()[0]:.1f})")
                print(f"  crowdselect {r['ours_s']:.1f}s {r['ours_mib']:.0f} MiB; plain script {r['plain_s']:.1f}s "
                      f"{r['plain_mib']:.0f} MiB; same ids {r['same_ids']}/1000 (same order: {r['same_order']})")
                print(f"  wall ratio = {r['ours_s'] / r['plain_s']:.2f}x   peak memory ratio = "
                      f"{r['ours_mib'] / r['plain_mib']:.2f}x")
            if len(peaks) > 1:
                lo, hi = min(peaks), max(peaks)
                print(f"  peak memory {hi:,} / {lo:,} rows = {peaks[hi] / peaks[lo]:.2f}x (target <= 2)")
        if args.only in (None, "ingest", "embed"):
            from crowdselect.runtime.ray_setup import configure_data, ensure_ray

            ensure_ray()
            configure_data()
        if args.only in (None, "ingest"):
            r = ingest_part(args.wide_rows, folder)
            print(f"\nwide Parquet ingest, {r['n']:,} x 19 (load {os.getloadavg()[0]:.1f}); target >= 50,000 rows/s")
            for ex in ("local", "ray"):
                print(f"  read_crowd ({ex}) {r['n'] / r[f'{ex}_s']:,.0f} rows/s ({r[f'{ex}_s']:.1f}s); "
                      f"bare read_table {r['arrow_s']:.2f}s; ratio {r[f'{ex}_s'] / r['arrow_s']:.1f}x")
        if args.only in (None, "embed"):
            r = embed_part(args.embed_rows)
            print(f"\nembedding, {r['n']:,} ShareGPT instructions, MiniLM, CPU (load {os.getloadavg()[0]:.1f})")
            for ex in ("local", "ray"):
                print(f"  Embedder stage ({ex}) {r[f'{ex}_s']:.1f}s, SentenceTransformer.encode {r['st_s']:.1f}s; "
                      f"throughput ratio = {r['st_s'] / r[f'{ex}_s']:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
