"""Eval decontamination of a selection's pool: which eval sets, their texts, the per-block stage and its wiring.

    decontaminate:                       # `crowdselect select --decontaminate mt-bench,arena/question.jsonl`
      against: [mt-bench, arena/question.jsonl]
      ngram: 13                          # NeMo Curator's n-gram size
      min_words: 8                       # shorter eval texts match exactly only (NeMo's min_ngram_size)
      cosine: 0.75                       # the embedding rule's threshold; null turns the rule off

A spec is `mt-bench` (the 80 questions, both turns, from the package the eval reads:
`crowdselect.eval.questions`) or a file: FastChat / Arena-Hard question files (rows with `question_id` or
`uid`, read as the eval reads them), or else an instruction file in any pool format (a PROXY's held-out
instructions). Every turn of every question is one eval text. The rules are `crowdselect.select.contamination`'s.

`flag_block` runs per block (both executors); `decontaminate` wires it: flagged rows come back to the driver
(with their evidence) and leave the pool before normalisation, scoring and clustering; the caller writes
them with `write_contamination` (contamination.jsonl: one line per flagged pool row).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError
from crowdselect.core.errors import UserError
from crowdselect.select.contamination import RULES, EvalIndex, EvalText, Match, build_index, find_matches

MT_BENCH = "mt-bench"
CONTAMINATION = "contamination"  # per-row evidence (JSON text) while the stage runs; null when clean
CONTAMINATION_FILE = "contamination.jsonl"
DEFAULT_COSINE = 0.75  # from the labelled set (bench/decontam_labelled.py; README "Decontamination")


@dataclass
class DecontaminateConfig:
    against: list[str] = field(default_factory=list)  # eval sets: mt-bench and/or question files; empty: off
    ngram: int = 13
    min_words: int = 8
    cosine: float | None = DEFAULT_COSINE  # None: no embedding rule

    def validate(self) -> None:
        for i, spec in enumerate(self.against):
            if not spec.strip():
                raise ConfigError(f"against[{i}]: empty; give mt-bench or a question file")
        if self.ngram < 1:
            raise ConfigError(f"ngram: must be >= 1, got {self.ngram}")
        if not 1 <= self.min_words <= self.ngram:
            raise ConfigError(f"min_words: must be from 1 to ngram ({self.ngram}), got {self.min_words}")
        if self.cosine is not None and not 0 < self.cosine <= 1:
            raise ConfigError(f"cosine: must be in (0, 1], or null for no embedding rule, got {self.cosine}")

    @property
    def active(self) -> bool:
        return bool(self.against)


def load_eval_texts(specs: list[str]) -> list[EvalText]:
    """Every turn of every question of each spec, in spec order then file order. UserError naming the file
    and line for a bad file (the eval's own checks)."""
    from crowdselect.eval.questions import load_questions

    texts: list[EvalText] = []
    for spec in specs:
        if spec == MT_BENCH:
            questions = load_questions(None)
        elif _is_question_file(spec):
            questions = load_questions(spec)
        else:
            questions = _instruction_file(spec)
        texts += [EvalText(spec, q["question_id"], t + 1, text) for q in questions for t, text in enumerate(q["turns"])]
    return texts


def eval_sets(eval_section: dict[str, Any]) -> list[str]:
    """The question sets an eval config (EvalConfig keys, as `crowdselect experiment`'s `eval:`) scores on:
    MT-bench or its `questions` file, the pairwise questions, the PROXY's held-out instructions.

    >>> eval_sets({"mtbench": False, "proxy": {"instructions": "held.jsonl"}})
    ['held.jsonl']
    >>> eval_sets({"pairwise": {"questions": "arena.jsonl"}})
    ['mt-bench', 'arena.jsonl']
    """
    own = eval_section.get("questions") or MT_BENCH
    sets = [own] if eval_section.get("mtbench", True) else []
    pairwise, proxy = eval_section.get("pairwise"), eval_section.get("proxy")
    if isinstance(pairwise, dict):
        sets.append(pairwise.get("questions") or own)
    if isinstance(proxy, dict) and proxy.get("instructions"):
        sets.append(proxy["instructions"])
    return list(dict.fromkeys(sets))


def _is_question_file(path: str) -> bool:
    """A FastChat / Arena-Hard question file: its first row names a question_id or uid."""
    from crowdselect.core.records import iter_records

    try:
        first = next(iter(iter_records(path)), None)
    except FileNotFoundError:
        raise UserError(f"decontaminate: {path}: no such file (give mt-bench or a question file)") from None
    return first is not None and isinstance(first.value, dict) and ("question_id" in first.value or "uid" in first.value)


def _instruction_file(path: str) -> list[dict[str, Any]]:
    """Instructions in a pool format (e.g. a PROXY's held-out file) as one-turn questions."""
    from crowdselect.pool.read import check_rejects, read_pool

    read = read_pool([path])
    check_rejects(read, "fail")
    if not read.rows:
        raise UserError(f"decontaminate: {path}: no questions or instructions in the file")
    return [{"question_id": r[C.ID], "turns": [r[C.INSTRUCTION]]} for r in read.rows]


def describe_sets(texts: list[EvalText]) -> list[dict[str, Any]]:
    """Per eval set: its name, questions and texts (run.json, the summary, the dataset card)."""
    out: dict[str, dict[str, Any]] = {}
    for t in texts:
        d = out.setdefault(t.source, {"set": t.source, "questions": set(), "texts": 0})
        d["questions"].add(str(t.question_id))
        d["texts"] += 1
    return [{**d, "questions": len(d["questions"])} for d in out.values()]


def evidence(m: Match, ix: EvalIndex) -> str:
    """One flagged row's evidence as JSON text: the eval text it matched, the rule, the n-gram, the cosine."""
    t = ix.texts[m.text]
    return json.dumps({"rule": m.rule, "rules": list(m.rules),
                       "eval": {"set": t.source, "question_id": t.question_id, "turn": t.turn, "text": t.text},
                       "ngram": m.ngram, "cosine": None if m.cosine is None else round(m.cosine, 4)},
                      ensure_ascii=False)


def flag_block(batch, index: EvalIndex, cosine: float | None):
    """pyarrow block (instruction, optional embedding) -> + `contamination` (evidence JSON, null if clean)."""
    import pyarrow as pa

    X = None
    if C.EMBEDDING in batch.column_names and batch.num_rows:
        X = np.stack(batch.column(C.EMBEDDING).to_numpy(zero_copy_only=False)).astype(np.float32)
    matches = find_matches(batch.column(C.INSTRUCTION).to_pylist(), X, index, cosine)
    return batch.append_column(CONTAMINATION, pa.array([None if m is None else evidence(m, index) for m in matches],
                                                       pa.string()))


@dataclass
class Decontaminated:
    """The pool without its flagged rows, and the flagged rows (id order) with their evidence."""

    clean: Any  # Rows
    flagged: list[dict[str, Any]]
    sets: list[dict[str, Any]]

    def removed(self, n_rows: str) -> dict[str, Any]:
        """Instructions and input rows removed (`n_rows`: the column counting a row's input lines), by rule."""
        by_rule = {r: sum(f["rule"] == r for f in self.flagged) for r in RULES}
        return {"instructions": len(self.flagged), "rows": sum(int(f[n_rows] or 1) for f in self.flagged),
                "by_rule": by_rule}

    def take_from(self, counts: dict[str, Any], n_rows: str, missing: list[str]) -> None:
        """Move the flagged rows out of run.json's accepted counts: input = accepted + rejected +
        decontaminated (rows and instructions); their missing answers leave `missing_answers` too."""
        gone = self.removed(n_rows)
        counts["accepted_rows"] -= gone["rows"]
        counts["accepted_instructions"] -= gone["instructions"]
        counts["decontaminated_rows"], counts["decontaminated_instructions"] = gone["rows"], gone["instructions"]
        for m in missing:
            counts["missing_answers"][m.removeprefix("missing_")] -= sum(int(f[m] or 0) for f in self.flagged)

    def record(self, cfg: DecontaminateConfig, n_rows: str) -> dict[str, Any]:
        """run.json's `decontamination`: the sets, the rules' settings and what was removed."""
        return {"against": list(cfg.against), "sets": self.sets, "ngram": cfg.ngram, "min_words": cfg.min_words,
                "cosine": cfg.cosine, "removed": self.removed(n_rows), "file": CONTAMINATION_FILE}

    def note(self, cfg: DecontaminateConfig, n_rows: str) -> str:
        """One line for the summary's notes."""
        gone = self.removed(n_rows)
        sets = ", ".join(f"{s['set']} ({s['questions']} questions, {s['texts']} texts)" for s in self.sets)
        rules = ", ".join(f"{k} {v}" for k, v in gone["by_rule"].items())
        cos = "off" if cfg.cosine is None else f"cosine >= {cfg.cosine}"
        return (f"decontaminated against {sets}: {gone['instructions']:,} instruction(s) ({gone['rows']:,} input rows) "
                f"removed before scoring ({rules}; rules: exact, {cfg.ngram}-gram, embedding {cos}); "
                f"each with its evidence in {CONTAMINATION_FILE}")


def drop_contaminated(ds, crowd, cfg, counts: dict[str, Any]) -> tuple[Any, Any, Decontaminated]:
    """The select job's step: the pool (`ds`: metric rows, with the n_rows and missing-answer tallies) and the
    crowd rows (Rows) without the rows that copy an eval question, and what was found; `counts` (run.json's)
    move from accepted to decontaminated. cfg: the SelectConfig. Nothing left: contamination.jsonl is written
    and the run stops (UserError)."""
    from functools import partial

    from crowdselect.core import log
    from crowdselect.crowd.blocks import N_ROWS
    from crowdselect.crowd.parse import MISSING
    from crowdselect.runtime.rows import filter_rows

    dec, tally = cfg.decontaminate, [N_ROWS, *MISSING]
    found = remove_contaminated(ds, dec, cfg.embedder, tally)
    found.take_from(counts, N_ROWS, MISSING)
    log.say(found.note(dec, N_ROWS))
    if counts["accepted_instructions"] == 0:
        uri = write_contamination(cfg.out, found.flagged)
        raise UserError(f"every usable row matched the eval sets ({', '.join(dec.against)}): nothing to select; "
                        f"the matches are in {uri}")
    gone = partial(_not_in, ids=[f[C.ID] for f in found.flagged])
    return found.clean.drop_columns(tally), filter_rows(crowd, gone), found


def _not_in(block, ids: list[str]):
    """Predicate: the block's rows whose id is not in `ids` (pyarrow compute; either executor)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.invert(pc.is_in(block[C.ID], value_set=pa.array(ids, pa.string())))


def remove_contaminated(ds, cfg: DecontaminateConfig, embedder, keep: list[str]) -> Decontaminated:
    """The wiring: the eval sets' texts, their embeddings on the driver (`embedder`: the run's EmbedderConfig;
    the embedding rule needs `ds` to carry the pool's embeddings), then `decontaminate`."""
    texts = load_eval_texts(cfg.against)
    E = None
    if cfg.cosine is not None:
        from crowdselect.select.embed import embed_texts

        E = embed_texts([t.text for t in texts], embedder)
    return decontaminate(ds, texts, cfg, E, keep)


def decontaminate(ds, texts: list[EvalText], cfg: DecontaminateConfig, eval_embeddings: np.ndarray | None,
                  keep: list[str]) -> Decontaminated:
    """Flag the rows of `ds` (Rows: instruction, id, source, `keep` columns, and `embedding` when the
    embedding rule is on), materialised once; returns the clean rows (lazy, without the flag) and the
    flagged ones (id order: the same file from either executor)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from crowdselect.runtime.rows import filter_rows

    index = build_index(texts, n=cfg.ngram, min_words=cfg.min_words, embeddings=eval_embeddings)
    flagged_ds = ds.map_batches(flag_block, batch_format="pyarrow", batch_size=None,
                                fn_kwargs={"index": index, "cosine": cfg.cosine}).materialize()
    bad = filter_rows(flagged_ds, lambda b: pc.is_valid(b[CONTAMINATION]))
    flagged = sorted(bad.select_columns([C.ID, C.SOURCE, C.INSTRUCTION, CONTAMINATION, *keep]).take_all(),
                     key=lambda r: r[C.ID])
    if not flagged:
        return Decontaminated(flagged_ds.drop_columns([CONTAMINATION]), [], describe_sets(texts))
    gone = pa.array([r[C.ID] for r in flagged], pa.string())
    clean = filter_rows(flagged_ds, lambda b: pc.invert(pc.is_in(b[C.ID], value_set=gone)))
    rows = [{**r, **json.loads(r.pop(CONTAMINATION))} for r in flagged]
    return Decontaminated(clean.drop_columns([CONTAMINATION]), rows, describe_sets(texts))


def contamination_records(flagged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """contamination.jsonl's lines: id, source (FILE:LINE), instruction, rule, every rule that fired, the eval
    text matched (set, question_id, turn, text), the first shared n-gram and the cosine."""
    return [{C.ID: f[C.ID], C.SOURCE: f[C.SOURCE], C.INSTRUCTION: f[C.INSTRUCTION], "rule": f["rule"],
             "rules": f["rules"], "eval": f["eval"], "ngram": f["ngram"], "cosine": f["cosine"]} for f in flagged]


def write_contamination(out: str, flagged: list[dict[str, Any]]) -> str:
    """DIR/contamination.jsonl (written even when empty: a run that decontaminated says it found nothing)."""
    from crowdselect.core import storage
    from crowdselect.select.outputs import jsonl

    uri = storage.join(out, CONTAMINATION_FILE)
    storage.write_text(uri, jsonl(contamination_records(flagged)))
    return uri
