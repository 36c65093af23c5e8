"""`crowdselect inspect PATH [PATH ...]`: what a crowd table holds, and a crowd config that reads it.

Prints the format (canonical, long, wide with flat columns, or wide with one struct column per generator:
the Magpie-100K-Generator-Zoo layout), the rows (Parquet: from the files' metadata; JSON lines: counted
while streaming), the generators with the family and size read from their names (crowd/names.py), every
reward key with its min / max / null counts, the missing answers per generator, and a proposed crowd config
that `crowdselect select --config` reads (`--write-config FILE` writes it too). Nothing is guessed
silently: a name whose family or size cannot be read or a missing id column is a commented line saying
what to fill in; of several reward keys one is named in the open and the others are commented beside it. Reads with pyarrow in this process, no Ray; a bad
file is a one-line error (exit 2), a bad JSON line is counted and the first one named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.core.blank import blank_mask
from crowdselect.core.errors import UserError
from crowdselect.core.paths import check_inputs
from crowdselect.core.records import READ_ERRORS, display_path, iter_records, list_data_files, split_by_kind
from crowdselect.crowd.config import CROWD_SUFFIXES, DEFAULT_RESPONSE, DEFAULT_REWARD
from crowdselect.crowd.names import family_and_size
from crowdselect.crowd.parse import detect_crowd_format
from crowdselect.crowd.wide import StructShape, first_row, reward_line, struct_shape

CHUNK = 4096  # JSON lines per Arrow table while streaming
FLAT_SUFFIX = DEFAULT_RESPONSE.removeprefix("{name}")  # "_response": a flat wide table's generator columns
ID_COLUMNS = (C.ID, "uuid")  # the id column a proposed config names, first found
PAPER_REWARD = "Skywork-Reward-Llama-3.1-8B"  # the reward model that drives the paper's metrics (SPEC: "main")


@dataclass
class KeyStats:
    """One reward key over every answer that is there (a generator that did not answer is not counted)."""

    min: float = math.inf
    max: float = -math.inf
    nulls: int = 0
    values: int = 0

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        values = pc.cast(values, pa.float64())
        finite = pc.filter(values, pc.is_finite(values))
        self.nulls += len(values) - len(finite)
        self.values += len(finite)
        if len(finite):
            mm = pc.min_max(finite)
            self.min, self.max = min(self.min, mm["min"].as_py()), max(self.max, mm["max"].as_py())


@dataclass
class GeneratorStats:
    answers: int = 0  # rows where the generator's response is there and not blank
    null_response: int = 0  # did not answer (null struct or object, null response)
    empty_response: int = 0  # empty or whitespace-only


@dataclass
class Inspection:
    files: list[str]
    format: str  # canonical / long / wide
    struct: StructShape | None  # the generator structs of a wide table, or None (flat)
    columns: list[str]  # the first file's top-level columns
    rows: int = 0
    rows_from: str = ""
    generators: dict[str, GeneratorStats] = field(default_factory=dict)
    rewards: dict[str, KeyStats] = field(default_factory=dict)
    bad_rows: int = 0
    first_bad: str | None = None

    @property
    def layout(self) -> str:
        if self.format != "wide":
            return self.format
        return "wide, struct columns (one per generator)" if self.struct else "wide, flat columns"


def inspect_crowd(paths: list[str]) -> Inspection:
    """Read every file of `paths` once and gather what `render` prints."""
    check_inputs(paths, flag="inspect")  # a missing path, or a Hub that does not answer, in one line
    files = list_data_files(paths, CROWD_SUFFIXES, what="crowd").files
    first, tree = next(((r, t) for r, t in map(first_row, files) if r is not None), (None, None))
    if first is None:
        raise UserError(f"{display_path(files[0])}: no readable row to inspect (empty or broken file)")
    fmt = detect_crowd_format(first)
    shape = struct_shape(tree, ID_COLUMNS + (C.INSTRUCTION,)) if fmt == "wide" else None
    insp = Inspection(files, fmt, shape, list(tree))
    json_files, parquet_files = split_by_kind(files)
    insp.rows = sum(_parquet_rows(f) for f in parquet_files)
    insp.rows_from = "Parquet metadata" if not json_files else ("counted" if not parquet_files else
                                                                  "Parquet metadata + JSON lines counted")
    for f in files:
        try:
            for table in _tables(f, insp):
                if f in json_files:
                    insp.rows += table.num_rows
                for g, response, rewards in _answers(table, insp):
                    _count(insp, g, response, rewards)
        except (pa.ArrowException, TypeError, ValueError, KeyError) as e:  # values of an unexpected shape
            raise UserError(f"{display_path(f)}: cannot inspect ({type(e).__name__}: {e})") from None
    insp.rows += insp.bad_rows  # JSON lines that were not read are rows too
    return insp


def _parquet_rows(path: str) -> int:
    fs, inner = storage.filesystem(path)
    try:
        with fs.open_input_file(inner) as f:
            return pq.ParquetFile(f).metadata.num_rows
    except READ_ERRORS as e:
        raise UserError(f"{display_path(path)}: cannot read the Parquet file ({e})") from None


def _tables(path: str, insp: Inspection) -> Iterator[pa.Table]:
    """The file as Arrow tables. JSON lines that are not objects of the detected shape are counted as bad."""
    if path.endswith(".parquet"):
        fs, inner = storage.filesystem(path)
        try:
            with fs.open_input_file(inner) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=CHUNK):
                    yield pa.Table.from_batches([batch])
        except READ_ERRORS as e:
            raise UserError(f"{display_path(path)}: cannot read the Parquet file ({e})") from None
        return
    chunk: list[dict] = []
    for rec in iter_records(path):
        if rec.error is not None or not isinstance(rec.value, dict):
            _bad(insp, f"{display_path(path)}:{rec.line}: {rec.error or 'not a JSON object'}")
            continue
        chunk.append(rec.value)
        if len(chunk) == CHUNK:
            yield _from_rows(chunk, insp, path)
            chunk = []
    if chunk:
        yield _from_rows(chunk, insp, path)


def _bad(insp: Inspection, where: str) -> None:
    insp.bad_rows += 1
    insp.first_bad = insp.first_bad or where


def _from_rows(rows: list[dict], insp: Inspection, path: str) -> pa.Table:
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError):  # mixed types: keep the rows that fit the first
        good = []
        for row in rows:
            try:
                pa.Table.from_pylist(good[:1] + [row])
                good.append(row)
            except (pa.ArrowException, TypeError, ValueError):
                _bad(insp, f"{display_path(path)}: a row whose values change type ({json.dumps(row)[:60]}...)")
        return pa.Table.from_pylist(good)


def _answers(table: pa.Table, insp: Inspection) -> Iterator[tuple[str, pa.ChunkedArray, dict]]:
    """(generator, responses, {reward key: values}) of one table, whatever its format."""
    if insp.format == "wide" and insp.struct:
        for g in insp.struct.columns:
            if g not in table.column_names or not pa.types.is_struct(table.column(g).type):
                continue
            col = table.column(g)
            names = {f.name for f in col.type}
            response = _field(col, insp.struct.answer) if insp.struct.answer in names else pa.nulls(len(col))
            yield g, response, {k: _field(col, k) for k in insp.struct.rewards if k in names}
        return
    if insp.format == "wide":
        for c in table.column_names:
            if c.endswith(FLAT_SUFFIX) and len(c) > len(FLAT_SUFFIX):
                g = c.removesuffix(FLAT_SUFFIX)
                reward = DEFAULT_REWARD.format(name=g)
                yield g, table.column(c), ({C.REWARD: table.column(reward)} if reward in table.column_names else {})
        return
    if insp.format == "canonical":
        flat = pc.list_flatten(table.column(C.RESPONSES).combine_chunks()) \
            if C.RESPONSES in table.column_names else pa.array([], pa.struct([]))
        table = pa.table({f.name: flat.field(f.name) for f in flat.type})
    if not {C.MODEL, C.RESPONSE}.issubset(table.column_names):
        return
    models = table.column(C.MODEL)
    for g in pc.unique(models).drop_null().to_pylist():
        rows = table.filter(pc.fill_null(pc.equal(models, g), False))
        yield g, rows.column(C.RESPONSE), ({C.REWARD: rows.column(C.REWARD)} if C.REWARD in rows.column_names
                                           else {})


def _field(col: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    return pc.struct_field(col, [col.type.get_field_index(name)])  # null where the struct is null


def _count(insp: Inspection, g: str, response: pa.ChunkedArray, rewards: dict) -> None:
    stats = insp.generators.setdefault(g, GeneratorStats())
    present = pc.is_valid(response)
    n_empty = 0
    if pa.types.is_string(response.type) or pa.types.is_large_string(response.type):
        blank = pc.fill_null(blank_mask(response), False)  # the readers' rule: invisible text is empty too
        n_empty = pc.sum(pc.cast(blank, pa.int64())).as_py() or 0
    stats.null_response += len(response) - (pc.sum(pc.cast(present, pa.int64())).as_py() or 0)
    stats.empty_response += n_empty
    stats.answers += len(response) - response.null_count - n_empty
    for key, values in rewards.items():
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_null(values.type):
            insp.rewards.setdefault(key, KeyStats()).add(pc.filter(values, present))


# -- what is printed ------------------------------------------------------------------------------------------

def render(insp: Inspection) -> str:
    """The report `crowdselect inspect` prints (the proposed config last)."""
    files = ", ".join(display_path(f) for f in insp.files[:3]) + (" ..." if len(insp.files) > 3 else "")
    lines = [f"files:      {len(insp.files)} ({files})", f"format:     {insp.layout}",
             f"rows:       {insp.rows:,} ({insp.rows_from})"]
    if insp.bad_rows:
        lines.append(f"bad rows:   {insp.bad_rows:,} not read (first: {insp.first_bad})")
    if insp.struct:
        lines.append(f"answer:     field '{insp.struct.answer or '?'}' of each generator struct")
    lines += ["", f"generators ({len(insp.generators)}):",
              f"  {'name':<34} {'family':<14} {'size_b':>7} {'answers':>9} {'null':>7} {'empty':>7}"]
    for g, s in insp.generators.items():
        fs = family_and_size(g)
        fam, size = (fs[0], f"{fs[1]:g}") if fs else ("?", "?")
        lines.append(f"  {g:<34} {fam:<14} {size:>7} {s.answers:>9,} {s.null_response:>7,} {s.empty_response:>7,}")
    lines += ["", "reward keys (over the answers that are there):",
              f"  {'key':<34} {'min':>10} {'max':>10} {'null':>7}"]
    for k, s in insp.rewards.items():
        lo, hi = (f"{s.min:.4g}", f"{s.max:.4g}") if s.values else ("-", "-")
        lines.append(f"  {k:<34} {lo:>10} {hi:>10} {s.nulls:>7,}")
    if len(insp.rewards) > 1:
        lines += ["", f"several reward keys: the proposed config below uses {proposed_reward(list(insp.rewards))};"
                  " to choose another in your own config:", f"  {reward_line(next(iter(insp.rewards)), insp.columns)}"]
    return "\n".join(lines) + "\n"


def proposed_config(insp: Inspection, paths: list[str], name: str | None = None) -> str:
    """A crowd config for `crowdselect select --config` (YAML, commented where the user must decide);
    `name`: the file it is written to, for the command line at its head."""
    out = [f"# Proposed by: crowdselect inspect {' '.join(paths)}",
           f"# Run: crowdselect select --config {name or 'THIS.yaml'} --k 1000 --clusters 10 --out runs/select",
           "# Check every generator's family and size_b (stability ranks siblings of a family by size).",
           "generators:"]
    for g in insp.generators:
        fs = family_and_size(g)
        if fs:
            out.append(f"  - {{name: {json.dumps(g)}, family: {json.dumps(fs[0])}, size_b: {fs[1]:g}}}")
        else:  # GeneratorSpec needs both: a family of its own, which has no say in stability, until filled in
            out.append(f"  - {{name: {json.dumps(g)}, family: {json.dumps(g)}, size_b: 1}}"
                       "  # FILL IN family and size_b: not read from the name (as written, a family of one)")
    return "\n".join(out + _input_section(insp, paths)) + "\n"


def _input_section(insp: Inspection, paths: list[str]) -> list[str]:
    out = ["input:", f"  path: [{', '.join(json.dumps(p) for p in paths)}]", f"  format: {insp.format}"]
    if insp.format != "wide":
        return out
    ident = next((c for c in ID_COLUMNS if c in insp.columns), None)
    out += ["  wide:", f"    id: {json.dumps(ident)}" if ident else
            "    # id: COLUMN    # FILL IN: no 'id' or 'uuid' column; name the column with a unique id per row"]
    out.append(f"    instruction: {C.INSTRUCTION}" if C.INSTRUCTION in insp.columns else
               "    # instruction: COLUMN    # FILL IN: no 'instruction' column")
    if not insp.struct:
        return out + [f"    response: {json.dumps(DEFAULT_RESPONSE)}", f"    reward: {json.dumps(DEFAULT_REWARD)}"]
    out.append(f"    response: {json.dumps('{name}.' + (insp.struct.answer or 'FIELD'))}")
    keys = list(insp.rewards)
    chosen = proposed_reward(keys)
    if len(keys) > 1:  # chosen in the open, so the file runs as it is and the choice is the user's to change
        out.append(f"    # {len(keys)} reward keys in the data; {chosen} drives the metrics "
                   f"({'the paper' if chosen == PAPER_REWARD else 'the first key'}'s choice). Others:")
        out += [f"    #   reward: {json.dumps('{name}.' + k)}" for k in keys if k != chosen]
    return out + [f"    reward: {json.dumps('{name}.' + chosen)}"]


def proposed_reward(keys: list[str]) -> str:
    """The reward key a proposed config names: the paper's primary reward model when the data has it, else the
    first key in the file's order. (`select` itself never picks one of several: it stops and names them.)

    >>> proposed_reward(["ArmoRM-Llama3-8B-v0.1", "Skywork-Reward-Llama-3.1-8B"]), proposed_reward(["b", "a"])
    ('Skywork-Reward-Llama-3.1-8B', 'b')
    """
    return PAPER_REWARD if PAPER_REWARD in keys else keys[0]


def run_inspect(paths: list[str], write_config: str | None = None) -> int:
    """Entry of `crowdselect inspect`: print the report and the proposed config (and write it)."""
    insp = inspect_crowd(paths)
    config = proposed_config(insp, paths, write_config)
    print(render(insp))
    print(f"proposed crowd config{f' (written to {write_config})' if write_config else ''}:\n")
    print(config)
    if write_config:
        try:
            storage.write_text(write_config, config)
        except OSError as e:
            raise UserError(f"--write-config {write_config}: cannot write ({e})") from None
    return 0
