"""The dataset card's text from a run record (pure), its typed data table, and the cards `run` and `experiment`
fill in with what they know (pool, primary reward model)."""

from __future__ import annotations

from pathlib import Path

import yaml

from crowdselect.select.card import card_text, size_category, table

ROOT = Path(__file__).resolve().parents[2]
RUN = {
    "config": {"generators": [{"name": "q|7b", "family": "qwen", "size_b": 7}, {"name": "q-1b", "family": "qwen",
                                                                                "size_b": 1}],
               "selection": {"strategy": "crowdselect", "weights": [1, 1, 2], "k": 2, "clusters": 2, "seed": 42,
                             "cluster": True},
               "embedder": {"model": "pkg:all-minilm-l6-v2"}, "card": {"license": "cc-by-4.0", "language": ["en"]}},
    "input_files": ["pool.jsonl"], "format": "canonical",
    "counts": {"input_rows": 10, "accepted_rows": 7, "rejected_rows": 1, "decontaminated_rows": 2,
               "accepted_instructions": 7},
    "decontamination": {"sets": [{"set": "mt-bench", "questions": 80, "texts": 160}], "ngram": 13, "cosine": 0.75,
                        "removed": {"instructions": 2, "rows": 2, "by_rule": {"exact": 1, "ngram": 0, "embedding": 1}}},
    "dedup": {"cosine": 0.9, "dropped": 3},
    "generator_rewards": {"q|7b": {"n": 7, "mean": 1.5}}, "versions": {"crowdselect": "0.1.0"},
    "invocation": "crowdselect select --out o",
}


def test_the_card_header_is_hub_metadata_and_the_body_the_provenance():
    text = card_text(RUN, 2)
    _, head, body = text.split("---\n", 2)
    meta = yaml.safe_load(head)
    assert meta["license"] == "cc-by-4.0" and meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": "data/train-00000-of-00001.parquet"}]}]
    assert "| q\\|7b | qwen | 7 | 7 | 1.5 |" in body and "| q-1b | qwen | 1 | 0 | — |" in body
    assert "10 input rows = 7 accepted + 1 rejected + 2 decontaminated" in body
    assert "against mt-bench (80 questions, 160 texts): 2 instruction(s) (2 input rows) removed" in body
    assert "exact 1, ngram 0, embedding 1" in body and "3 near-duplicate instruction(s) dropped" in body
    assert "| command | `crowdselect select --out o` |" in body and "not recorded (the crowd table" in body
    assert size_category(999_999) == "100K<n<1M"


def test_a_run_without_cleaning_or_command_says_so():
    run = {**RUN, "decontamination": None, "dedup": None, "invocation": None}
    body = card_text(run, 2)
    assert "| decontamination | not run" in body and "| dedup | off" in body and "not recorded (called from Python)" in body


def test_the_data_table_keeps_types_where_every_value_is_null():
    t = table([{"id": "a", "instruction": "i", "response": "r", "model": "m", "reward": None, "cluster": 0,
                "score": 1.0, "difficulty": 1.0, "separability": 0.0, "stability": None,
                "messages": [{"role": "user", "content": "i"}, {"role": "assistant", "content": "r"}]}])
    assert str(t.schema.field("stability").type) == "double" and str(t.schema.field("reward").type) == "double"


def test_run_and_experiment_fill_the_card_with_their_pool_and_primary_reward():
    from crowdselect.pipeline.config import load_run_config
    from crowdselect.pipeline.experiment import Crowd, selection_card
    from crowdselect.pipeline.experiment_config import load_experiment_config
    from crowdselect.pipeline.job import selection_card as run_card

    cfg = load_run_config(str(ROOT / "examples" / "quickstart.yaml"), out="/tmp/unused")
    card = run_card(cfg)
    primary = next(r for r in cfg.rewards if r.name == cfg.metric_reward)
    assert card.pool == ", ".join(cfg.pool.path) and primary.model in card.reward_model and card.license == "unknown"
    exp = load_experiment_config(str(ROOT / "examples" / "experiment_cpu.yaml"))
    crowd = Crowd({"path": ["c"]}, [], {"run": "runs/quickstart", "rewards": [
        {"name": "j", "model": "pkg:m", "kind": "judge", "primary": True}]})
    got = selection_card(exp, crowd)
    assert got["pool"] == "the crowd of `crowdselect run` runs/quickstart" and got["reward_model"] == "pkg:m (judge, reward `j`)"
