"""exports/hf: `datasets.load_dataset` reads the selection, and its card names the crowd and the settings the
run used (the example crowd, one planted MT-bench question, decontaminated, through the CLI in this process)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import crowdselect
from crowdselect.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_selection_loads_with_datasets_and_its_card_tells_how_it_was_made(tmp_path):
    import datasets

    pool = tmp_path / "crowd.jsonl"
    rows = (ROOT / "examples" / "crowd.jsonl").read_text()
    planted = json.loads(rows.splitlines()[0])
    planted.update(id="planted", instruction="What are some business etiquette norms when doing business in Japan?")
    pool.write_text(rows + json.dumps(planted) + "\n")
    out = tmp_path / "sel"
    args = ["select", "--config", str(ROOT / "examples" / "crowd.yaml"), "--input", str(pool), "--k", "8",
            "--clusters", "4", "--weights", "1,1,1.5", "--decontaminate", "mt-bench", "--executor", "local",
            "--out", str(out), "card.license=apache-2.0"]
    assert main(args) == 0

    ds = datasets.load_dataset(str(out / "exports" / "hf"), cache_dir=str(tmp_path / "hf-cache"))["train"]
    selected = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    assert ds.num_rows == 8 and ds["id"] == [r["id"] for r in selected]
    assert ds[0]["messages"] == selected[0]["messages"] and ds["response"] == [r["response"] for r in selected]

    text = (out / "exports" / "hf" / "README.md").read_text()
    _, head, body = text.split("---\n", 2)
    meta = yaml.safe_load(head)
    assert meta["license"] == "apache-2.0" and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["text-generation"]
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-00000-of-00001.parquet"
    crowd = yaml.safe_load((ROOT / "examples" / "crowd.yaml").read_text())
    for g in crowd["generators"]:
        assert f"| {g['name']} | {g['family']} | {g['size_b']} | 24 |" in body  # the planted row's answers left with it
    assert crowd["card"]["reward_model"] in body
    assert "difficulty 1.0, separability 1.0, stability 1.5" in body and "k 8, 4 k-means clusters" in body
    assert "against mt-bench (80 questions, 160 texts): 1 instruction(s) (1 input rows) removed" in body
    assert "25 input rows = 24 accepted + 0 rejected + 1 decontaminated" in body
    assert "| dedup | off" in body and f"| crowdselect | {crowdselect.__version__} |" in body
    assert f"`crowdselect {' '.join(args)}`" in body
    assert "planted" not in ds["id"]
