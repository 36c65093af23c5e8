"""The selection as a Hugging Face dataset folder: DIR/exports/hf/ with the data and a dataset card.

    exports/hf/README.md                              the card: YAML header (configs + data files, size category,
                                                      task categories, license), then the provenance
    exports/hf/data/train-00000-of-00001.parquet      the selected rows (selected.jsonl's fields, typed)

`datasets.load_dataset("DIR/exports/hf")` reads it (the header's `configs:` names the file), and the folder can
be pushed to the Hub as it is. The card is written from run.json's own record (`card_text(run, n)`: pure), so
it says what the run did: the pool, the crowd (generators with family and size), the reward model, the metric
weights, k and clusters, decontamination (against what, with counts), dedup counts, the crowdselect version
and the command. What the run cannot know (the reward model of a precomputed crowd table, the data's license)
comes from the `card:` config section or is written as not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from crowdselect.core import columns as C
from crowdselect.core import storage

HF_DIR = ("exports", "hf")
DATA_FILE = "data/train-00000-of-00001.parquet"
SIZE_BINS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
             (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))


@dataclass
class CardConfig:
    license: str = "unknown"  # the data's license id on the Hub (the pool's and the generators' terms decide it)
    pretty_name: str | None = None  # default: "crowdselect selection: K of N instructions"
    pool: str | None = None  # what the pool is; default: the input files (`run`: the pool files)
    reward_model: str | None = None  # the model behind the rewards; `run` fills it from its primary reward
    language: list[str] = field(default_factory=list)  # ISO 639-1 codes for the card's header (unset: none)


def size_category(n: int) -> str:
    """The Hub's size bin of n rows.

    >>> size_category(6), size_category(1000), size_category(250_000)
    ('n<1K', '1K<n<10K', '100K<n<1M')
    """
    return next((name for limit, name in SIZE_BINS if n < limit), "n>100M")


def _cell(value: Any) -> str:
    """A value for a Markdown table cell: pipes escaped, line breaks as spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def header(run: dict, n: int) -> dict:
    cfg = run.get("config") or {}
    card = cfg.get("card") or {}
    head = {"license": card.get("license") or "unknown", "pretty_name": title(run, n),
            "task_categories": ["text-generation"], "tags": ["crowdselect", "instruction-tuning", "synthetic", "sft"],
            "size_categories": [size_category(n)],
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}]}
    if card.get("language"):
        head["language"] = list(card["language"])
    return head


def title(run: dict, n: int) -> str:
    card = (run.get("config") or {}).get("card") or {}
    pool = (run.get("counts") or {}).get("accepted_instructions")
    return card.get("pretty_name") or f"crowdselect selection: {n} of {pool} instructions"


def _decontamination_line(run: dict) -> str:
    d = run.get("decontamination")
    if not d:
        return "not run (no `decontaminate` sets given)"
    sets = ", ".join(f"{s['set']} ({s['questions']} questions, {s['texts']} texts)" for s in d["sets"])
    rules = ", ".join(f"{k} {v}" for k, v in d["removed"]["by_rule"].items())
    cos = "off" if d["cosine"] is None else f">= {d['cosine']}"
    return (f"against {sets}: {d['removed']['instructions']} instruction(s) ({d['removed']['rows']} input rows) "
            f"removed before scoring ({rules}); rules: exact match after normalisation, a shared {d['ngram']}-gram, "
            f"embedding cosine {cos}; every removed row is in contamination.jsonl beside selected.jsonl")


def _dedup_line(run: dict) -> str:
    d = run.get("dedup")
    if not d:
        return "off (`selection.dedup.enabled: false`, as in the paper)"
    return (f"{d['dropped']} near-duplicate instruction(s) dropped within k-means clusters (cosine >= {d['cosine']}; "
            "the higher-scored row of a pair kept); duplicates.jsonl lists them")


def provenance(run: dict) -> list[tuple[str, str]]:
    """(what, value) rows of the card's provenance table."""
    cfg = run.get("config") or {}
    sel, card, c = cfg.get("selection") or {}, cfg.get("card") or {}, run.get("counts") or {}
    pool = card.get("pool") or ", ".join(run.get("input_files") or (cfg.get("input") or {}).get("path") or [])
    w = sel.get("weights") or []
    return [
        ("pool", f"{pool} ({run.get('format')} crowd table)"),
        ("rows", f"{c.get('input_rows')} input rows = {c.get('accepted_rows')} accepted + {c.get('rejected_rows')} "
                 f"rejected + {c.get('decontaminated_rows', 0)} decontaminated; {c.get('accepted_instructions')} "
                 "instructions scored"),
        ("reward model", card.get("reward_model") or "not recorded (the crowd table holds rewards without naming "
                                                     "their model; set card.reward_model)"),
        ("strategy", f"{sel.get('strategy')}; metric weights difficulty {w[0] if w else '?'}, separability "
                     f"{w[1] if w else '?'}, stability {w[2] if w else '?'}"),
        ("k, clusters", f"k {sel.get('k')}, {sel.get('clusters')} k-means clusters"
                        + ("" if sel.get("cluster", True) else " (cluster quota off)") + f", seed {sel.get('seed')}"),
        ("embedder", (cfg.get("embedder") or {}).get("model")),
        ("decontamination", _decontamination_line(run)),
        ("dedup", _dedup_line(run)),
        ("crowdselect", (run.get("versions") or {}).get("crowdselect", "?")),
        ("command", f"`{run['invocation']}`" if run.get("invocation") else "not recorded (called from Python)"),
    ]


def _generator_rows(run: dict) -> list[str]:
    rewards = run.get("generator_rewards") or {}
    rows = ["| generator | family | size (B) | answers | mean reward |", "|---|---|---|---|---|"]
    for g in (run.get("config") or {}).get("generators") or []:
        r = rewards.get(g["name"]) or {}
        mean = f"{r['mean']:.4g}" if r.get("mean") is not None else "—"
        rows.append(f"| {_cell(g['name'])} | {_cell(g.get('family'))} | {g.get('size_b')} | {r.get('n', 0)} | {mean} |")
    return rows


FIELDS = (("id", "the instruction's id in the pool"), ("instruction", "the instruction"),
          ("response", "the crowd's best-rewarded answer"), ("model", "the generator that wrote it"),
          ("reward", "its reward"), ("cluster", "its k-means cluster"), ("score", "the selection score"),
          ("difficulty", "-mean reward over the crowd"), ("separability", "reward variance over the crowd"),
          ("stability", "mean within-family Spearman(reward, size); null where undefined"),
          ("messages", "[user, assistant] chat turns, ready for SFT"))


def card_text(run: dict, n: int) -> str:
    """README.md of exports/hf for a run.json record and n selected rows (pure)."""
    head = yaml.safe_dump(header(run, n), sort_keys=False, allow_unicode=True)
    gens = (run.get("config") or {}).get("generators") or []
    lines = ["---", head.rstrip(), "---", "", f"# {title(run, n)}", "",
             f"{n} instruction-response pairs chosen by [crowdselect](https://arxiv.org/abs/2503.01836) "
             f"(CrowdSelect) from {(run.get('counts') or {}).get('accepted_instructions')} instructions, each "
             f"answered by a crowd of {len(gens)} generators and scored by a reward model. Each row keeps the "
             "crowd's best-rewarded answer.", "", "## Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in provenance(run)]
    lines += ["", "### The crowd", ""] + _generator_rows(run)
    lines += ["", "## Fields", "", "| field | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in FIELDS]
    lines += ["", "## Use", "", "```python", "from datasets import load_dataset", "",
              'ds = load_dataset("path/to/exports/hf")   # or the Hub repo this folder was pushed to', "```", "",
              "## License", "",
              f"`{header(run, n)['license']}` (the `card.license` setting of the run). The answers are model outputs "
              "and the instructions come from the pool: their licenses and the generators' terms of use apply.", ""]
    return "\n".join(lines)


def table(records: list[dict]):
    """selected.jsonl's records as a typed Arrow table (nulls keep their column's type)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([(C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.RESPONSE, pa.string()),
                        (C.MODEL, pa.string()), (C.REWARD, pa.float64()), (C.CLUSTER, pa.int64()),
                        (C.SCORE, pa.float64()), *[(m, pa.float64()) for m in C.METRICS],
                        (C.MESSAGES, pa.list_(message))])
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in records], schema=schema)


def write_card(out: str, records: list[dict], run: dict) -> list[str]:
    """DIR/exports/hf/{README.md, data/...parquet}; returns the two paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = storage.join(out, *HF_DIR)
    sink = pa.BufferOutputStream()
    pq.write_table(table(records), sink)
    data = storage.join(folder, DATA_FILE)
    storage.write_bytes(data, sink.getvalue().to_pybytes())
    readme = storage.join(folder, "README.md")
    storage.write_text(readme, card_text(run, len(records)))
    return [readme, data]
