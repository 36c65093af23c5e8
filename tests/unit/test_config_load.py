"""One loader for every phase: YAML file < CLI flags < `key=value` overrides; errors blame the source."""

import pytest

from crowdselect.core.config import ConfigError, load_config
from crowdselect.pipeline.config import load_run_config
from crowdselect.select.config import FLAG_KEYS, SelectConfig, load_select_config
from crowdselect.train.config import load_train_config

CROWD = """
generators:
  - {name: a, family: f, size_b: 1}
  - {name: b, family: f, size_b: 2}
selection: {k: 10}
out: from-file
"""
RUN = """
out: from-file
pool: {path: pool.jsonl}
generators:
  - {name: a, family: f, size_b: 1, model: m1}
  - {name: b, family: f, size_b: 2, model: m2}
rewards:
  - {name: judge, model: j, kind: judge}
"""


def write(tmp_path, text, name="crowd.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def flags(**given):
    return {k: given.get(k) for k in FLAG_KEYS}


def test_a_bad_flag_is_blamed_on_the_flag_not_the_file(tmp_path):
    path = write(tmp_path, CROWD)
    with pytest.raises(ConfigError) as e:
        load_select_config(path, flags(k=-5), [])
    assert str(e.value) == "--k: must be >= 1, got -5"
    with pytest.raises(ConfigError) as e:
        load_select_config(path, flags(weights="1,x,2"), [])
    assert str(e.value) == "--weights: expected a number, got 'x'"
    with pytest.raises(ConfigError) as e:
        load_select_config(path, flags(), ["selection.k=-5"])
    assert str(e.value) == "command line: selection.k: must be >= 1, got -5"


def test_a_bad_value_in_the_file_is_blamed_on_the_file(tmp_path):
    path = write(tmp_path, CROWD.replace("k: 10", "k: -3"))
    with pytest.raises(ConfigError) as e:
        load_select_config(path, flags(), [])
    assert str(e.value) == f"{path}: selection.k: must be >= 1, got -3"
    # a flag that replaces the bad value makes the config good
    assert load_select_config(path, flags(k=4), []).selection.k == 4


def test_select_precedence_file_then_flags_then_overrides(tmp_path):
    path = write(tmp_path, CROWD)
    assert load_select_config(path, flags(), []).out == "from-file"
    assert load_select_config(path, flags(out="from-flag"), []).out == "from-flag"
    cfg = load_select_config(path, flags(out="from-flag", k=3), ["out=from-override", "selection.k=7"])
    assert cfg.out == "from-override" and cfg.selection.k == 7
    assert load_select_config(path, flags(input="one.jsonl"), []).input.path == ["one.jsonl"]


def test_run_precedence_file_then_out_flag_then_overrides(tmp_path):
    path = write(tmp_path, RUN, "run.yaml")
    assert load_run_config(path).out == "from-file"
    assert load_run_config(path, out="from-flag").out == "from-flag"
    assert load_run_config(path, out="from-flag", overrides=["out=from-override"]).out == "from-override"
    assert load_run_config(path).pool.path == ["pool.jsonl"]


def test_train_precedence_file_then_out_flag_then_overrides(tmp_path):
    path = write(tmp_path, "out: from-file\ndata: {path: sel.jsonl}\n", "train.yaml")
    assert load_train_config(path).out == "from-file"
    assert load_train_config(path, "from-flag").out == "from-flag"
    cfg = load_train_config(path, "from-flag", ["out=from-override"])
    assert cfg.out == "from-override" and cfg.data.path == ["sel.jsonl"]
    with pytest.raises(ConfigError, match=r"^--out: expected a string"):
        load_config(SelectConfig, write(tmp_path, CROWD), flags={"out": ["a", "b"]})


def test_a_string_stays_a_string_where_a_list_or_string_is_allowed(tmp_path):
    cfg = load_train_config(None, "o", ["data.path=x", "lora.target_modules=all-linear"])
    assert cfg.lora.target_modules == "all-linear"
    assert load_train_config(None, "o", ["data.path=x", "lora.target_modules=[q_proj]"]).lora.target_modules == [
        "q_proj"]


BOMB = """      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_naming_the_file(tmp_path):
    """A 'billion laughs' in engine_kwargs (9^9 values once expanded, ~500 bytes): exit 2 in seconds. Run in a
    child with a 3 GB address-space cap and a timeout, so a regression fails here instead of eating the machine."""
    import resource
    import subprocess
    import sys

    gen_a = "  - {name: a, family: f, size_b: 1, model: m1}\n"
    bomb = "  - name: a\n    family: f\n    size_b: 1\n    model: m1\n    engine_kwargs:\n" + BOMB
    path = write(tmp_path, RUN.replace(gen_a, bomb).replace("out: from-file", f"out: {tmp_path / 'o'}"), "run.yaml")

    (tmp_path / "pool.jsonl").write_text('{"instruction": "hi"}\n')  # a run that would go on to write config.yaml

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    r = subprocess.run([sys.executable, "-m", "crowdselect.cli", "run", path], capture_output=True, text=True,
                       timeout=60, preexec_fn=cap, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"{path}: its aliases (*name) expand to more than 100,000 values" in r.stderr
    assert "Traceback" not in r.stderr


def test_yaml_alias_cycle_and_python_tags_are_refused(tmp_path):
    from crowdselect.core.config import load_yaml

    path = write(tmp_path, "a: &x [1, *x]\n")
    with pytest.raises(ConfigError, match=r"crowd.yaml: an alias \(\*name\) is used inside its own anchor"):
        load_yaml(path)
    marker = tmp_path / "ran"
    path = write(tmp_path, f"out: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"crowd.yaml: not valid YAML: could not determine a constructor"):
        load_yaml(path)
    assert not marker.exists()
    path = write(tmp_path, "a: " + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ConfigError, match=r"crowd.yaml: nested too deeply"):
        load_yaml(path)
    path = write(tmp_path, "shared: &s {temperature: 0.7}\nx: *s\ny: *s\n")  # a few aliases are fine
    assert load_yaml(path)["y"] == {"temperature": 0.7}


def test_decontaminate_flag_takes_a_comma_list_and_dedup_is_a_selection_key(tmp_path):
    from crowdselect.cli import parse

    path = write(tmp_path, CROWD)
    args = parse(["select", "--config", path, "--decontaminate", "mt-bench, arena.jsonl", "selection.dedup.enabled=true"])
    cfg = load_select_config(path, {k: getattr(args, k, None) for k in FLAG_KEYS}, args.overrides)
    assert cfg.decontaminate.against == ["mt-bench", "arena.jsonl"] and cfg.decontaminate.cosine == 0.75
    assert cfg.selection.dedup.enabled and cfg.selection.dedup.cosine == 0.9
    assert load_select_config(path, flags(), []).decontaminate.active is False
    with pytest.raises(ConfigError) as e:
        load_select_config(path, flags(), ["decontaminate.cosine=2"])
    assert str(e.value) == "command line: decontaminate.cosine: must be in (0, 1], or null for no embedding rule, got 2.0"
