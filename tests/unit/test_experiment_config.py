"""`crowdselect experiment` settings: the example configs load, per-cell train/eval configs, errors that name
the key, and the Table-2 layout of the results (best bold, delta against random). Pure, fast."""

from pathlib import Path

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.pipeline.experiment_config import cell_eval_dict, cell_train_dict, load_experiment_config
from crowdselect.pipeline.experiment_results import aggregate, cell_values, render_table

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


def counts(expected, usable, unparseable=0, failed=0):
    return {"expected": expected, "answered": expected, "judged": usable, "unparseable": unparseable,
            "failed": failed, "usable": usable}


def test_table_shows_seeds_and_bolds_only_a_lead_beyond_the_spread():
    cells = [{"status": "done", "strategy": {"name": n}, "student": {"name": "llama"},
              "summary": {"mean": m, "by_turn": {"1": m + 1, "2": m - 1}}}
             for n, m in (("random", 5.0), ("random", 5.5), ("crowdselect", 6.0), ("crowdselect", 6.4))]
    cells.append({"status": "failed", "strategy": {"name": "ifd"}, "student": {"name": "llama"}})
    rows = aggregate(cells, "random")
    lines = render_table(rows, "random").splitlines()
    assert lines[0] == "| strategy | llama: MT-bench | llama: turn 1 | llama: turn 2 |"
    assert lines[2].startswith("| random | 5.250 ± 0.354 (n=2) |")
    # crowdselect leads by 0.95, more than either spread (0.354, 0.283): bold
    assert lines[3].startswith("| crowdselect | **6.200 ± 0.283** (n=2) (+0.950) |")
    assert len(lines) == 4  # the failed cell has no row
    close = [{"status": "done", "strategy": {"name": n}, "student": {"name": "s"}, "summary": {"mean": m}}
             for n, m in (("random", 5.0), ("random", 6.0), ("mine", 5.9), ("mine", 6.1))]
    assert not any(r["best"] for r in aggregate(close, "random"))  # a lead of 0.5 within a spread of 0.707
    one_seed = [{"status": "done", "strategy": {"name": n}, "student": {"name": "s"}, "summary": {"mean": m}}
                for n, m in (("random", 1.0), ("mine", 9.0))]
    assert not any(r["best"] for r in aggregate(one_seed, "random"))  # no spread, no claim


def test_an_incomplete_cell_is_marked_and_left_out_of_means_and_bold():
    def cell(name, seed, mean, usable):
        return {"status": "done", "cell": f"{name}__s__seed{seed}", "strategy": {"name": name},
                "student": {"name": "s"}, "seed": seed,
                "summary": {"mean": mean, "completeness": {"mtbench": counts(160, usable, failed=160 - usable)}}}

    cells = [cell("random", 0, 5.0, 160), cell("random", 1, 5.2, 160), cell("mine", 0, 7.0, 160),
             cell("mine", 1, 7.1, 160), cell("mine", 2, 2.0, 100)]  # 100 of 160: 62% < 95%
    rows = {r["strategy"]: r for r in aggregate(cells, "random", 0.95)}
    assert rows["mine"]["mean"] == 7.05 and rows["mine"]["seeds"] == 2 and rows["mine"]["incomplete"] == 1
    assert rows["mine"]["failed"] == 60 and rows["mine"]["expected"] == 480 and rows["mine"]["best"]
    table = render_table(list(rows.values()), "random")
    assert "| mine | **7.050 ± 0.071** (n=2 of 3) (+1.950) |" in table
    values = cell_values(cells, 0.95)
    assert [v["included"] for v in values] == [True, True, True, True, False]
    assert values[-1]["completeness"] == 0.625
    all_out = aggregate([cell("random", 0, 5.0, 10)], "random", 0.95)
    assert all_out[0]["mean"] is None and "— (n=0 of 1 complete)" in render_table(all_out, "random")
    from types import SimpleNamespace

    from crowdselect.pipeline.experiment_results import render_markdown

    cfg = SimpleNamespace(note=None, k=8, clusters=2, seeds=[0, 1, 2], baseline="random", min_completeness=0.95)
    md = render_markdown(cfg, list(rows.values()), cells, 1.0)
    assert "## Completeness" in md and "| mine__s__seed2 | MT-bench | 160 | 160 | 100 | 0 | 60 | 62% | **no** (< 95%) |" in md


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
    table = [line for line in md.split("## Completeness")[0].splitlines() if line.startswith("|")]
    assert table == ["| strategy | s\\|1 b: MT-bench |", "|---|---|", "| random | 5.000 (n=1) |",
                     "| mine\\|x new | 6.000 (n=1) (+1.000) |"]
    assert "> first line\n> | not | a | row |" in md and "- bad\\|cell x: boom \\| a \\| b \\|" in md
    html = _md_table(md)
    assert "<th>s|1 b: MT-bench</th>" in html and "<td>mine|x new</td>" in html and html.count("<tr>") == 3
