"""Keys never reach a written config or the terminal: api_key_env must name a variable, a key inline in a
config is refused, URL userinfo and credential-named keys are scrubbed from every resolved config written."""

import json

import pytest
import yaml

from crowdselect import cli
from crowdselect.core.config import ConfigError
from crowdselect.core.secrets import scrub_config, scrub_secrets
from crowdselect.eval.config import load_eval_config
from crowdselect.select.config import FLAG_KEYS, load_select_config

KEY = "tok3n-Private-9f2e7c"  # not shaped like sk-/Bearer: only the new checks can catch it


def crowd(tmp_path, **extra):
    fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
    path = tmp_path / "crowd.yaml"
    path.write_text("generators:\n"
                    f"  - {{name: a, family: f, size_b: 1, backend: openai, model: m, {fields}}}\n"
                    "  - {name: b, family: f, size_b: 2}\n")
    return str(path)


def test_api_key_env_holding_a_key_is_refused_without_showing_it(tmp_path, capsys):
    path = crowd(tmp_path, base_url="http://127.0.0.1:1/v1", api_key_env=KEY)
    with pytest.raises(ConfigError) as e:
        load_select_config(path, {k: None for k in FLAG_KEYS}, [])
    assert "crowd.yaml: generators[0].api_key_env: must be the name of an environment variable" in str(e.value)
    assert KEY not in str(e.value)
    assert cli.main(["select", "--config", path, "--input", "x.jsonl", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "api_key_env" in err and KEY not in err


def test_eval_judge_api_key_env_holding_a_key_is_refused(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text(f"model: {{model: m}}\njudge_api: {{model: j, base_url: 'http://h/v1', api_key_env: {KEY}}}\n"
                    "out: o\n")
    with pytest.raises(ConfigError, match=r"eval.yaml: judge_api.api_key_env: must be the name") as e:
        load_eval_config(str(path))
    assert KEY not in str(e.value)
    path.write_text("model: {model: m}\njudge_api: {model: j, base_url: 'http://h/v1', api_key_env: JUDGE_KEY}\n"
                    "out: o\n")
    assert load_eval_config(str(path)).judge_api.api_key_env == "JUDGE_KEY"


def test_a_key_inline_in_sampling_is_refused(tmp_path):
    path = crowd(tmp_path, base_url="http://127.0.0.1:1/v1", sampling=f"{{temperature: 0, api_key: {KEY}}}")
    with pytest.raises(ConfigError, match=r"generators\[0\].sampling.api_key: a key is never taken from the "
                                          r"config.*api_key_env") as e:
        load_select_config(path, {k: None for k in FLAG_KEYS}, [])
    assert KEY not in str(e.value)


def test_scrub_config_blanks_userinfo_and_credential_keys():
    tree = {"generators": [{"base_url": f"https://user:{KEY}@api.example.com/v1", "model_kwargs": {"token": KEY},
                            "model": "m"}], "ray": {"address": f"ray://admin:{KEY}@head:10001"}, "k": 5}
    clean = scrub_config(tree)
    assert KEY not in json.dumps(clean)
    assert clean["generators"][0]["base_url"] == "https://***@api.example.com/v1"
    assert clean["generators"][0]["model_kwargs"] == {"token": "***"} and clean["k"] == 5
    assert clean["ray"]["address"] == "ray://***@head:10001"
    assert scrub_secrets("see crowdselect/generate/hf_stage.py and s3://bucket/a@b") == \
        "see crowdselect/generate/hf_stage.py and s3://bucket/a@b"


def test_eval_writes_no_key_to_config_yaml_or_summary(tmp_path):
    from crowdselect.eval.job import write_outputs

    path = tmp_path / "eval.yaml"
    path.write_text(f"model: {{model: m, model_kwargs: {{token: {KEY}}}}}\n"
                    f"judge_api: {{model: j, base_url: 'https://u:{KEY}@judge.example/v1', api_key_env: JUDGE_KEY}}\n")
    cfg = load_eval_config(str(path), out=str(tmp_path / "o"))
    write_outputs(cfg, {}, {"model": "m", "judge": cfg.judge_label, "benchmark": "mt-bench", "turns": 1})
    for name in ("config.yaml", "summary.json"):
        assert KEY not in (tmp_path / "o" / name).read_text(), name
    written = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert written["judge_api"]["base_url"] == "https://***@judge.example/v1"
    assert written["judge_api"]["api_key_env"] == "JUDGE_KEY"


def test_run_config_yaml_holds_no_credential(tmp_path):
    """`crowdselect run` writes DIR/config.yaml first; a pool with a bad row stops it before Ray starts."""
    (tmp_path / "pool.jsonl").write_text('{"instruction": "hi"}\nnot json\n')
    path = tmp_path / "run.yaml"
    path.write_text(f"out: {tmp_path / 'o'}\npool: {{path: {tmp_path / 'pool.jsonl'}}}\ngenerators:\n"
                    f"  - {{name: a, family: f, size_b: 1, backend: openai, model: m, "
                    f"base_url: 'https://me:{KEY}@api.example/v1', api_key_env: GEN_KEY}}\n"
                    "  - {name: b, family: f, size_b: 2, model: m2}\n"
                    "rewards:\n  - {name: judge, model: j, kind: judge}\n")
    assert cli.main(["run", str(path)]) == 2
    text = (tmp_path / "o" / "config.yaml").read_text()
    assert KEY not in text and "https://***@api.example/v1" in text
