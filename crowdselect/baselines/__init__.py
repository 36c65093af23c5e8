"""The paper's baselines that need a model, as Ray Data stages over per-instruction rows.

    ifd.py           IFDScorer: Cherry LLM instruction-following difficulty from a student's perplexities
    direct_score.py  DirectScorer: an LLM judge's probability-weighted 0-5 rating of (instruction, best response)
    tags.py          Tagger: InsTag-style intention tags from a generative judge (+ parse_tags)
    config.py        BaselinesConfig and add_baseline(ds, which, cfg): the map_batches wiring

Each writes its column (ifd, direct_score, tags) and `<column>_error`; the selection strategies "ifd",
"direct-score" and "tags" read them (tags through `crowdselect.baselines.tag_diversity.select_by_tags`).
"""
