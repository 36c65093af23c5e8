"""Where a wide table's values are: `input.wide` resolved against a file's real schema, flat or struct.

A wide table holds one response and one reward per generator, either in flat columns (`{name}_response`,
`{name}_reward`) or, as Magpie-100K-Generator-Zoo has it, in one struct column per generator named after
the model, holding the answer (`content`) and one float per reward model (`Skywork-Reward-Llama-3.1-8B`,
`ArmoRM-Llama3-8B-v0.1`, ...); in JSON lines that column is an object. A dotted template
(`{name}.content`) reaches into a struct. Names hold dots themselves (`Qwen2.5-3B-Instruct`,
`ArmoRM-Llama3-8B-v0.1`), so a path is never split on every dot: it is matched against the schema, the
longest top-level column that prefixes it first, then the longest field of that struct, and so on.

`resolve_wide` runs once per file on the driver, before any row is read, and returns the layout with every
generator's (response path, reward path); the row parsers (crowd/parse.py, crowd/blocks.py) only follow
paths. With the default templates and struct generator columns it fills them in: the answer field
(`content`, `response` or the only text field) and the reward key when the structs hold exactly one;
with several it stops and names them, with the config line to add. Pure Python and pyarrow types, no Ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq

from crowdselect.core import log, storage
from crowdselect.core.errors import UserError
from crowdselect.core.records import READ_ERRORS, iter_records
from crowdselect.crowd.config import ColumnPath, WideLayout

# a schema as a tree: name -> sub-tree (a struct / JSON object) or the kind of a leaf
TEXT, NUMBER, NULL, OTHER = "text", "number", "null", "other"
Tree = dict  # dict[str, Tree | str]
ANSWER_FIELDS = ("content", "response")  # the answer field of a struct, when it has several text fields


def schema_tree(schema: pa.Schema | pa.StructType) -> Tree:
    """The tree of an Arrow schema (Parquet): structs become sub-trees, other types a leaf kind."""
    return {f.name: schema_tree(f.type) if pa.types.is_struct(f.type) else _arrow_kind(f.type) for f in schema}


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return TEXT
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return NUMBER
    return NULL if pa.types.is_null(t) else OTHER


def object_tree(obj: dict) -> Tree:
    """The tree of a JSON object (the first row of a JSON-lines file)."""
    return {k: object_tree(v) if isinstance(v, dict) else _value_kind(v) for k, v in obj.items()}


def _value_kind(v: object) -> str:
    if v is None:
        return NULL
    if isinstance(v, str):
        return TEXT
    return NUMBER if isinstance(v, (int, float)) and not isinstance(v, bool) else OTHER


def first_row(path: str, sample: int = 100) -> tuple[dict | None, Tree | None]:
    """(first row as a dict, schema tree) of a crowd file, to detect the format and map wide columns.

    The tree of a JSON-lines file merges its first `sample` rows: a generator that did not answer the first
    instruction may be null or absent there. (None, None) for a file the reader will report as broken."""
    if path.endswith(".parquet"):
        fs, inner = storage.filesystem(path)
        try:
            with fs.open_input_file(inner) as f:
                pf = pq.ParquetFile(f)
                tree = schema_tree(pf.schema_arrow)
                first = next(pf.iter_batches(batch_size=1), None)
        except READ_ERRORS:  # the reader reports the broken file as a row error
            return None, None
        return (first.to_pylist()[0] if first is not None and first.num_rows else None), tree
    head = list(islice(iter_records(path), sample))  # one read of the file's start, as first_record has it
    if not head or head[0].error is not None or not isinstance(head[0].value, dict):
        return None, None
    tree: Tree = {}
    for r in head:
        if isinstance(r.value, dict):
            tree = _merge(tree, object_tree(r.value))
    return head[0].value, tree


def _merge(a: Tree, b: Tree) -> Tree:
    """Both trees' names; where one side is null or absent the other's kind or struct wins."""
    out = dict(a)
    for k, v in b.items():
        old = out.get(k)
        if isinstance(old, dict) and isinstance(v, dict):
            out[k] = _merge(old, v)
        elif old is None or old == NULL:
            out[k] = v
    return out


def resolve_path(path: str, tree: Tree) -> ColumnPath | None:
    """`path` as (column, field, ...) of `tree`, or None when the schema has no such value.

    The longest name of a level that is the whole rest of the path, or a prefix of it followed by a dot,
    wins. Below a null (a JSON row whose object is null) the rest is taken as one field name.

    >>> resolve_path("Qwen2.5-3B-Instruct.ArmoRM-Llama3-8B-v0.1",
    ...              {"Qwen2": TEXT, "Qwen2.5-3B-Instruct": {"content": TEXT, "ArmoRM-Llama3-8B-v0.1": NUMBER}})
    ('Qwen2.5-3B-Instruct', 'ArmoRM-Llama3-8B-v0.1')
    >>> resolve_path("a_response", {"a_response": TEXT}), resolve_path("b.content", {"b": TEXT})
    (('a_response',), None)
    """
    if path in tree:
        return (path,)
    for name in sorted((n for n in tree if path.startswith(n + ".")), key=len, reverse=True):
        sub, rest = tree[name], path[len(name) + 1:]
        if sub == NULL:
            return (name, rest)
        inner = resolve_path(rest, sub) if isinstance(sub, dict) else None
        if inner is not None:
            return (name, *inner)
    return None


@dataclass(frozen=True)
class StructShape:
    """What the generator-like struct columns of a table hold (those with a text field)."""

    columns: tuple[str, ...]  # in file order
    answer: str | None  # the answer field; None when the text fields leave it open
    rewards: tuple[str, ...]  # numeric fields of any of them, in first-seen order


def struct_shape(tree: Tree, skip: tuple[str, ...] = ()) -> StructShape | None:
    """The struct columns of `tree` with a text field (generator columns), or None when there are none."""
    cols = [c for c, sub in tree.items() if c not in skip and isinstance(sub, dict) and TEXT in sub.values()]
    if not cols:
        return None
    texts = list(dict.fromkeys(k for c in cols for k, v in tree[c].items() if v == TEXT))
    answer = next((a for a in ANSWER_FIELDS if a in texts), texts[0] if len(texts) == 1 else None)
    rewards = tuple(dict.fromkeys(k for c in cols for k, v in tree[c].items() if v == NUMBER))
    return StructShape(tuple(cols), answer, rewards)


def reward_line(key: str, columns: Iterable[str], id_column: str = "id") -> str:
    """The config line that reads reward `key` from the generator structs (and the id from `uuid` when
    `id_column` is not among the table's `columns` and `uuid` is)."""
    columns = set(columns)
    extra = "id: uuid, " if id_column not in columns and "uuid" in columns else ""
    return f'input: {{wide: {{{extra}reward: "{{name}}.{key}"}}}}'


def resolve_wide(layout: WideLayout, tree: Tree, generators: list[str], where: str) -> WideLayout:
    """`layout` with every generator's paths in this file's schema; UserError (naming `where`) when the
    config and the file do not fit: a missing column, an unlisted generator column, a reward to choose."""
    shape = struct_shape(tree, (layout.id, layout.instruction))
    paths, missing = {}, [c for c in (layout.id, layout.instruction) if c not in tree]
    for g in generators:
        rp = resolve_path(layout.response_column(g), tree) or _auto(layout, shape, tree, g, "response", where)
        wp = resolve_path(layout.reward_column(g), tree) or _auto(layout, shape, tree, g, "reward", where)
        missing += [c for c, p in ((layout.response_column(g), rp), (layout.reward_column(g), wp)) if p is None]
        paths[g] = (rp, wp)
    auto = {wp[1] for g, (_, wp) in paths.items()
            if wp and wp[0] == g and len(wp) == 2 and not layout.chose(g, "reward")}
    if auto:  # the structs' one reward key, taken by `_auto` where the config leaves the reward to the default
        log.say(f"input: the generator structs hold one reward key, '{auto.pop()}': it is the reward")
    if missing:
        hint = "; did you mean input.wide.id: uuid?" if layout.id in missing and "uuid" in tree else ""
        raise UserError(f"{where}: wide layout column '{missing[0]}' not found (input.wide maps generators to "
                        f"columns; columns here: {', '.join(list(tree)[:12])}{hint})")
    _check_unlisted(layout, tree, shape, paths, where)
    return layout.with_paths(paths)


def _auto(layout: WideLayout, shape: StructShape | None, tree: Tree, g: str, what: str,
          where: str) -> ColumnPath | None:
    """The default template does not fit, the generator's column is a struct: its answer or reward field."""
    if layout.chose(g, what) or shape is None or not (isinstance(tree.get(g), dict) or tree.get(g) == NULL):
        return None
    if what == "response":
        if shape.answer is None:
            raise UserError(f"{where}: the generator structs have several text fields and none is 'content'; "
                            f"name the answer in the config: input: {{wide: {{response: \"{{name}}.FIELD\"}}}}")
        return (g, shape.answer)
    if len(shape.rewards) == 1:
        return (g, shape.rewards[0])
    if not shape.rewards:
        raise UserError(f"{where}: the generator structs ({', '.join(shape.columns[:3])}, ...) hold no numeric "
                        "reward field; set input.wide.reward")
    raise UserError(f"{where}: the generator structs hold {len(shape.rewards)} reward keys: "
                    f"{', '.join(shape.rewards)}; choose the one that drives the metrics by adding to the config: "
                    f"{reward_line(shape.rewards[0], tree, layout.id)} (`crowdselect inspect` proposes a whole config)")


def _check_unlisted(layout: WideLayout, tree: Tree, shape: StructShape | None,
                    paths: dict[str, tuple[ColumnPath, ColumnPath]], where: str) -> None:
    """A generator column the config does not list would be silently left out: name it."""
    taken = {p[0] for pair in paths.values() for p in pair} | {layout.id, layout.instruction}
    flat = _unlisted_flat(list(tree), layout, taken)
    structs = [c for c in (shape.columns if shape else ()) if c not in taken and c not in layout.ignore]
    if flat:
        raise UserError(f"{where}: column '{layout.response_column(flat[0])}' holds model '{flat[0]}', which the "
                        "crowd config does not list (add it to generators, or to input.wide.ignore)")
    if structs:
        raise UserError(f"{where}: struct column '{structs[0]}' holds a generator's answers, but the crowd config "
                        f"does not list '{structs[0]}' (add it to generators, or to input.wide.ignore)")


def _unlisted_flat(columns: list[str], layout: WideLayout, taken: set[str]) -> list[str]:
    """Generator names that flat columns hold by the response template, but the config does not list."""
    if "{name}" not in layout.response:
        return []
    head, tail = layout.response.split("{name}", 1)
    names = [c[len(head): len(c) - len(tail) if tail else None] for c in columns
             if c not in taken and c.startswith(head) and c.endswith(tail) and len(c) > len(head) + len(tail)]
    return [n for n in names if n and n not in layout.ignore]
