"""`crowdselect experiment` settings: the example configs load, per-cell train/eval configs, errors that name
the key, and the Table-2 layout of the results (best bold, delta against random). Pure, fast."""

from pathlib import Path

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.pipeline.experiment_config import cell_eval_dict, cell_train_dict, load_experiment_config
from crowdselect.pipeline.experiment_results import aggregate, render_table

ROOT = Path(__file__).resolve().parents[2]


def test_example_configs_load():
    cpu = load_experiment_config(str(ROOT / "examples" / "experiment_cpu.yaml"))
    assert [s.name for s in cpu.strategies] == ["crowdselect", "random", "difficulty-top"] and cpu.parallel == 1
    paper = load_experiment_config(str(ROOT / "examples" / "experiment_paper.yaml"))
    assert paper.k == 1000 and paper.clusters == 10 and len(paper.students) == 2


def test_cell_configs_carry_student_data_seed_and_base_baseline():
    cfg = load_experiment_config(str(ROOT / "examples" / "experiment_paper.yaml"))
    student = cfg.students[1]
    t = cell_train_dict(cfg, student, "sel/selected.jsonl", "cell/train", 2)
    assert t["model"]["name"] == "Qwen/Qwen2.5-3B-Instruct" and t["data"]["path"] == ["sel/selected.jsonl"]
    assert t["seed"] == 2 and t["data"]["seed"] == 2 and t["optim"]["warmup_steps"] == 150
    e = cell_eval_dict(cfg, student, "cell/train/model", "cell/eval")
    assert e["model"]["model"] == "cell/train/model"
    assert e["pairwise"]["baseline"]["model"] == "Qwen/Qwen2.5-3B-Instruct"  # the untrained student
    assert e["pairwise"]["baseline"]["backend"] == "vllm"  # answers the same way as the trained one


def test_errors_name_the_key(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("crowd: {run: r}\nstrategies: [{name: bogus}]\nstudents: [{name: s, model: m}]\nout: o\n")
    with pytest.raises(ConfigError, match=r"e.yaml: strategies\[0\].strategy: unknown 'bogus'"):
        load_experiment_config(str(path))
    path.write_text("crowd: {run: r}\nstrategies: [{name: random}]\nstudents: [{name: s, model: m}]\nout: o\n"
                    "train: {optim: {lr: -1}}\n")
    with pytest.raises(ConfigError, match=r"optim.lr: must be > 0"):
        load_experiment_config(str(path))
    # a strategy's weights and the seeds are select's settings: checked now, not when a cell's selection runs
    path.write_text("crowd: {run: r}\nstrategies: [{name: random}, {name: crowdselect, weights: [1, .nan, 2]}]\n"
                    "students: [{name: s, model: m}]\nout: o\n")
    with pytest.raises(ConfigError, match=r"e.yaml: strategies\[1\].weights\[1\]: expected a finite number"):
        load_experiment_config(str(path))
    path.write_text("crowd: {run: r}\nstrategies: [{name: random}, {name: crowdselect, weights: [1, -1, 2]}]\n"
                    "students: [{name: s, model: m}]\nout: o\n")
    with pytest.raises(ConfigError, match=r"e.yaml: strategies\[1\].weights: need numbers >= 0"):
        load_experiment_config(str(path))
    path.write_text("crowd: {run: r}\nstrategies: [{name: random}]\nstudents: [{name: s, model: m}]\nout: o\n"
                    "seeds: [1, -1]\n")
    with pytest.raises(ConfigError, match=r"e.yaml: seeds: must be an integer from 0 to 2\*\*32 - 1, got -1"):
        load_experiment_config(str(path))


def test_table_marks_best_and_delta_against_random():
    cells = [{"status": "done", "strategy": {"name": n}, "student": {"name": "llama"},
              "summary": {"mean": m, "by_turn": {"1": m + 1, "2": m - 1}}}
             for n, m in (("random", 5.0), ("random", 5.5), ("crowdselect", 6.0), ("crowdselect", 6.4))]
    cells.append({"status": "failed", "strategy": {"name": "ifd"}, "student": {"name": "llama"}})
    rows = aggregate(cells, "random")
    table = render_table(rows, "random")
    lines = table.splitlines()
    assert lines[0] == "| strategy | llama: MT-bench | llama: turn 1 | llama: turn 2 |"
    assert lines[2].startswith("| random | 5.250 ± 0.354 |")
    assert lines[3].startswith("| crowdselect | **6.200 ± 0.283** (+0.950) |")
    assert len(lines) == 4  # the failed cell has no row


def test_a_crowd_yaml_brings_its_column_mapping_to_every_cell(monkeypatch):
    from crowdselect.pipeline.experiment import open_crowd

    monkeypatch.chdir(ROOT)  # crowd.config is relative to the working directory, as on the command line
    crowd = open_crowd(load_experiment_config(str(ROOT / "examples" / "experiment_paper.yaml")))
    assert len(crowd.generators) == 19 and crowd.input["format"] == "wide"
    assert crowd.input["wide"]["reward"] == "{name}.Skywork-Reward-Llama-3.1-8B"
    assert crowd.input["path"] == ["hf://datasets/Magpie-Align/Magpie-100K-Generator-Zoo/data/*.parquet"]


def test_pipes_and_line_breaks_in_names_and_notes_keep_the_table_whole():
    """A `|` or a newline in a strategy name, a student name or the note added columns or ended rows."""
    from types import SimpleNamespace

    from crowdselect.pipeline.experiment_results import render_markdown
    from crowdselect.report.html import _md_table

    cells = [{"status": "done", "strategy": {"name": n}, "student": {"name": "s|1\nb"}, "summary": {"mean": m}}
             for n, m in (("random", 5.0), ("mine|x\nnew", 6.0))]
    cells.append({"status": "failed", "cell": "bad|cell\nx", "error": "boom\n| a | b |"})
    cfg = SimpleNamespace(note="first line\n| not | a | row |", k=8, clusters=2, seeds=[1], baseline="random")
    md = render_markdown(cfg, aggregate(cells, "random"), cells, 1.0)
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table == ["| strategy | s\\|1 b: MT-bench |", "|---|---|", "| random | 5.000 |",
                     "| mine\\|x new | **6.000** (+1.000) |"]
    assert "> first line\n> | not | a | row |" in md and "- bad\\|cell x: boom \\| a \\| b \\|" in md
    html = _md_table(md)
    assert "<th>s|1 b: MT-bench</th>" in html and "<td>mine|x new</td>" in html and html.count("<tr>") == 3
