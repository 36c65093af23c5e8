"""The data stages of `crowdselect run`: ingest → generate (per generator) → reward (per reward model) → crowd.

Each stage reads the shards of the stage before it and writes its own, one Parquet file per pool shard,
through `crowdselect.pipeline.store.StageStore` (manifest, atomic shard writes, resume). Model stages run as one
Ray Data pipeline over all pending shards (the engines start once); a shard is written the moment all its
rows are in (by the Ray workers, or the driver where workers do not share DIR: `pipeline.collect`), so a
killed driver loses only shards in flight. A row seen twice (a retried task) is kept once; a row missing at
the end, a failed engine or a stalled stage is an error naming the shards left.

    DIR/ingest/shard-*.parquet         id, instruction, source, shard            (+ rejected.jsonl)
    DIR/generate/<gen>/shard-*.parquet id, instruction, shard, response, error, tokens, model + lineage
    DIR/reward/<rm>/shard-*.parquet    id, model, shard, reward, reward_error, reward_model
    DIR/crowd/shard-*.parquet          id, instruction, responses [{model, response, reward}], source
    DIR/crowd_excluded/shard-*.parquet instructions with fewer than 2 rewarded answers, with the reason
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from crowdselect.core import columns as C
from crowdselect.core import log, storage
from crowdselect.core.config import output_fields, to_dict
from crowdselect.core.rejects import REJECTS_FILE, write_rejects
from crowdselect.core.secrets import scrub_config
from crowdselect.crowd.assemble import CROWD_SCHEMA, EXCLUDED_SCHEMA, assemble_shard
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.pipeline.answers_source import answers, new_stop_flag
from crowdselect.pipeline.collect import Expected, collect, workers_write
from crowdselect.pipeline.config import RunConfig
from crowdselect.pipeline.store import MANIFEST, StageStore, fingerprint, shard_name
from crowdselect.pool.read import check_rejects, read_pool
from crowdselect.reward.config import RewardSpec
from crowdselect.runtime.ray_setup import read_parquet

GEN_KEYS = (C.ID, C.MODEL)
LINEAGE = (C.MODEL, C.MODEL_ID, C.REVISION, C.SAMPLING, C.BACKEND)
# Fixed shard schemas: a shard where every row failed must still read back as strings, not nulls.
GENERATE_SCHEMA = pa.schema([(C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.SHARD, pa.string()),
                             (C.RESPONSE, pa.string()), (C.ERROR, pa.string()), (C.PROMPT_TOKENS, pa.int64()),
                             (C.OUTPUT_TOKENS, pa.int64())] + [(c, pa.string()) for c in LINEAGE])
REWARD_SCHEMA = pa.schema([(C.ID, pa.string()), (C.MODEL, pa.string()), (C.SHARD, pa.string()),
                           (C.REWARD, pa.float64()), (C.error_column(C.REWARD), pa.string()),
                           (C.REWARD_MODEL, pa.string())])


@dataclass
class Pool:
    """The ingested pool: its stage store and, per shard, the ids in pool order."""

    store: StageStore
    shards: dict[str, list[str]]
    content: str  # hash of every (id, instruction): generation depends on it

    def order(self, shard: str) -> dict[str, int]:
        return {rid: i for i, rid in enumerate(self.shards[shard])}


def output_settings(spec) -> dict:
    """What a stage's output depends on, as written to its manifest: the spec without its `resources:`
    section and its `not_output` fields (`core.config.output_fields`, declared by each spec), no credentials."""
    return scrub_config(output_fields(spec))


def ingest(cfg: RunConfig, out: str) -> Pool:
    """Read and shard the pool once; bad rows fail the run or go to ingest/rejected.jsonl."""
    store = StageStore.open(storage.join(out, "ingest"), {"pool": to_dict(cfg.pool)}, redo_on_change=True)
    if not store.complete:
        p = cfg.pool
        read = read_pool(p.path, p.format, p.id_field, p.instruction_field, p.limit)
        if read.skipped:
            log.say(f"pool: {read.skipped}")
        check_rejects(read, p.on_bad_rows)
        if not read.rows:
            raise_no_rows(read)
        for i in range(0, len(read.rows), p.shard_size):
            rows = read.rows[i:i + p.shard_size]
            name = shard_name(i // p.shard_size)
            store.write_shard(name, pa.Table.from_pylist([{**r, C.SHARD: name} for r in rows]))
        if read.rejects:
            write_rejects(read.rejects, storage.join(out, "ingest", REJECTS_FILE))
        store.mark_complete(rows=len(read.rows), rejected=len(read.rejects), files=read.files,
                            content=_content_hash(read.rows))
    shards = {s: store.read_shard(s).column(C.ID).to_pylist() for s in sorted(store.shards)}
    return Pool(store, shards, store.extra["content"])


def pool_size(cfg: RunConfig, out: str) -> int:
    """Instructions in the pool: from DIR/ingest/ when ingest is done with these settings, else read as ingest
    reads it (bad rows fail as they would there); nothing is written."""
    path = storage.join(out, "ingest", MANIFEST)
    if storage.exists(path):
        data = json.loads(storage.read_text(path))
        if data.get("complete") and data.get("fingerprint") == fingerprint({"pool": to_dict(cfg.pool)}):
            return int(data["extra"]["rows"])
    p = cfg.pool
    read = read_pool(p.path, p.format, p.id_field, p.instruction_field, p.limit)
    check_rejects(read, p.on_bad_rows)
    return len(read.rows)


def raise_no_rows(read) -> None:
    from crowdselect.core.errors import UserError

    raise UserError(f"the pool ({', '.join(read.files)}) holds no usable instruction "
                    f"({len(read.rejects)} rejected rows in ingest/{REJECTS_FILE})")


def _content_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r[C.ID]}\x00{r[C.INSTRUCTION]}\x01".encode())
    return h.hexdigest()[:16]


def generate(cfg: RunConfig, spec: GeneratorSpec, pool: Pool, out: str, meter: dict | None = None) -> StageStore:
    """Answers of one generator for every pending shard; failed rows kept with their error.
    `meter`, when given, gets `busy_s`: the seconds its replicas spent on batches (`batch_seconds`)."""
    from crowdselect.generate import build_generate, model_id, sampling_json, stage_operator

    store = generator_store(spec, pool, out)
    pending = [s for s in pool.shards if not store.is_done(s)]
    if pending:
        lineage = {C.MODEL: spec.name, C.MODEL_ID: model_id(spec), C.REVISION: spec.revision,
                   C.SAMPLING: sampling_json(spec), C.BACKEND: spec.backend}
        ds = read_parquet([pool.store.file(s) for s in pending]).select_columns([C.ID, C.INSTRUCTION, C.SHARD])
        rows = build_generate(spec)(ds)
        expected = Expected.of({s: [(rid,) for rid in pool.shards[s]] for s in pending})
        ran = collect(rows, expected, (C.ID,), store, partial(_generated, lineage=lineage), **_collecting(cfg),
                      desc=f"generate {spec.name}")
        if meter is not None:
            meter["busy_s"] = batch_seconds(ran, stage_operator(spec))
    store.mark_complete(**store.counts())
    return store


def generator_store(spec: GeneratorSpec, pool: Pool, out: str) -> StageStore:
    """A generator's stage folder (refused when it was made with other settings)."""
    settings = {"generator": output_settings(spec), "pool": pool.content}
    return StageStore.open(storage.join(out, "generate", spec.name), settings, redo_on_change=False)


def _collecting(cfg: RunConfig) -> dict:
    """How `collect` writes this run's shards: by the Ray workers or the driver (`workers_write`), and how long
    a stage may go without a row."""
    return {"workers": workers_write(cfg.shard_writer, cfg.out), "stall_s": cfg.stall_timeout_s or None,
            "progress": cfg.progress}


def _generated(table: pa.Table, lineage: dict) -> pa.Table:
    return _conform(_with_constants(table, lineage), GENERATE_SCHEMA)


def _scored(table: pa.Table) -> pa.Table:
    return _conform(table, REWARD_SCHEMA)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table's columns in `schema`'s order and types (null-typed columns become typed nulls)."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def _with_constants(table: pa.Table, values: dict) -> pa.Table:
    for name, value in values.items():
        table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    return table


def reward(cfg: RunConfig, spec: RewardSpec, pool: Pool, gens: dict[str, StageStore], out: str,
           meter: dict | None = None, *, stop: str | None = None, upstream: Callable[[], bool] | None = None
           ) -> StageStore:
    """Scores of one reward model for every answer that was generated (failed generations have none).

    Each shard is scored once every generator has written it (`answers_source`): started beside running
    generators, `upstream` says whether any still runs (no row then is no stall) and `stop` names the run's
    flag that a failed generator sets. `meter`, when given, gets `busy_s` as in `generate`."""
    from crowdselect.reward.wiring import add_rewards, stage_class

    settings = {"reward": output_settings(spec), "generators": {g: s.fp for g, s in gens.items()}}
    store = StageStore.open(storage.join(out, "reward", spec.name), settings, redo_on_change=False)
    pending = [s for s in pool.shards if not store.is_done(s)]
    if pending:
        ds = answers(pending, {s: [g.file(s) for g in gens.values()] for s in pending}, stop or new_stop_flag())
        ds = ds.map_batches(_answered_only, batch_format="pyarrow")
        scored = add_rewards(ds, spec).map_batches(_reward_columns, batch_format="pyarrow")
        expected = Expected(pending, partial(_answered_keys, gens, pool=pool), empty=REWARD_SCHEMA.empty_table())
        ran = collect(scored, expected, GEN_KEYS, store, _scored, **_collecting(cfg), desc=f"reward {spec.name}",
                      upstream=upstream)
        if meter is not None:
            meter["busy_s"] = batch_seconds(ran, stage_class(spec).__name__)
    store.mark_complete(**store.counts())
    return store


def batch_seconds(ds, operator: str) -> float | None:
    """Seconds the stage's model replicas spent on batches, once `ds` has run: the summed wall time of its Ray
    Data operators whose name holds `operator` (`Dataset.get_stats_summary`). An engine that works on several
    batches at once (vLLM) counts each batch's whole time, so there it is an upper bound. None when Ray Data
    reports no such operator."""
    try:
        todo, ops = [ds.get_stats_summary()], []
    except Exception:  # stats are bookkeeping: a run never fails for them
        return None
    while todo:  # the operators of this dataset and of the ones it was built from
        summary = todo.pop()
        ops += summary.operators_stats
        todo += summary.parents
    times = {op.operator_name: op.wall_time.sum for op in ops if operator in op.operator_name and op.wall_time}
    return float(sum(times.values())) if times else None


def build_crowd(pool: Pool, gens: dict[str, StageStore], primary: StageStore, out: str) -> tuple[StageStore, StageStore]:
    """Write crowd/ and crowd_excluded/ for every shard not done yet (cheap: redone when inputs change)."""
    settings = {"generators": {g: s.version for g, s in gens.items()}, "reward": primary.version}
    store = StageStore.open(storage.join(out, "crowd"), settings, redo_on_change=True)
    excluded = StageStore.open(storage.join(out, "crowd_excluded"), settings, redo_on_change=True)
    for shard in pool.shards:
        if store.is_done(shard):
            continue
        pool_rows = pool.store.read_shard(shard).select([C.ID, C.INSTRUCTION, C.SOURCE]).to_pylist()
        answers = {}
        for g, s in gens.items():
            t = s.read_shard(shard)
            answers[g] = {r[C.ID]: (r[C.RESPONSE], r[C.ERROR])
                          for r in t.select([C.ID, C.RESPONSE, C.ERROR]).to_pylist()}
        rt = primary.read_shard(shard)
        rewards = {}
        if rt.num_rows:
            rewards = {(r[C.ID], r[C.MODEL]): r[C.REWARD] for r in rt.select([C.ID, C.MODEL, C.REWARD]).to_pylist()}
        rows, bad = assemble_shard(pool_rows, answers, rewards)
        excluded.write_shard(shard, pa.Table.from_pylist(bad, schema=EXCLUDED_SCHEMA), errors=len(bad))
        store.write_shard(shard, pa.Table.from_pylist(rows, schema=CROWD_SCHEMA))
    store.mark_complete(**store.counts(), excluded=excluded.counts()["rows"])
    excluded.mark_complete(**excluded.counts())
    return store, excluded


def _answered_keys(gens: dict[str, StageStore], shard: str, *, pool: Pool) -> list[tuple[str, str]]:
    """(id, model) of the answers in a shard, in pool order then generator order."""
    order = pool.order(shard)
    keys = []
    for g, store in gens.items():
        t = store.read_shard(shard, [C.ID, C.ERROR])
        keys += [(rid, g) for rid, err in zip(t.column(C.ID).to_pylist(), t.column(C.ERROR).to_pylist(),
                                               strict=True) if err is None]
    rank = {g: i for i, g in enumerate(gens)}
    return sorted(keys, key=lambda k: (order[k[0]], rank[k[1]]))


def _answered_only(t: pa.Table) -> pa.Table:
    return t.filter(pc.is_null(t.column(C.ERROR))).drop_columns([C.ERROR])


def _reward_columns(t: pa.Table) -> pa.Table:
    err = C.error_column(C.REWARD)
    return t.select([C.ID, C.MODEL, C.SHARD, C.REWARD, err, C.REWARD_MODEL])
