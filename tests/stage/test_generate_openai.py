"""The OpenAI-compatible backend against a real local server (tests/stage/openai_server.py wraps SmolLM2).

Proves: answers come back through Ray Data; 503s are retried with backoff; a row that keeps failing, or
that the server rejects (400), is recorded with its error and not dropped; the rate limit spaces requests;
the key comes from the env var the config names and never shows in outputs, even when the server echoes
the request headers into its error bodies.
"""

import json
import os
import pickle
import urllib.request

import pytest
from openai_server import start_server

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.generate.openai_stage import OpenAIGenerator, build_openai_generate, read_api_key
from crowdselect.generate.spec import GeneratorResources, GeneratorSpec
from crowdselect.runtime.models import resolve_model

KEY = "sk-test-not-a-real-key-93f1"
PLAIN_KEY = "plain-secret-value-5c2e"  # not shaped like a key: only its exact value can find it
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    yield from start_server(resolve_model("pkg:smollm2-135m-instruct"), KEY)


@pytest.fixture(scope="module")
def echo_server():
    yield from start_server(resolve_model("pkg:smollm2-135m-instruct"), PLAIN_KEY, "--echo-headers")


def stats(base):
    return json.loads(urllib.request.urlopen(f"{base}/stats").read())


def spec_for(base, resources=None, **kw):
    args = {"name": "remote", "family": "x", "size_b": 1.0, "model": "test-model", "backend": "openai",
            "base_url": f"{base}/v1", "api_key_env": "CS_TEST_OPENAI_KEY", "max_tokens": 8,
            "resources": GeneratorResources(**{"max_retries": 2, "batch_size": 8, **(resources or {})}), **kw}
    return GeneratorSpec(**args)


def run(ray, spec, instructions):
    rows = [{C.ID: f"r{i}", C.INSTRUCTION: t, C.SHARD: "s0"} for i, t in enumerate(instructions)]
    out = build_openai_generate(spec, backoff_base_s=0.05)(ray.data.from_items(rows)).take_all()
    return {r[C.ID]: r for r in out}


def test_answers_retries_and_recorded_failures(server, ray_local, monkeypatch):
    monkeypatch.setenv("CS_TEST_OPENAI_KEY", KEY)
    texts = ["Name a colour.", "FLAKY: name a fruit.", "ALWAYS503 please", "REJECT this one"]
    got = run(ray_local, spec_for(server), texts)
    assert len(got) == 4  # one row per input row, failures included
    ok = got["r0"]
    assert ok[C.ERROR] is None and ok[C.RESPONSE] and 0 < ok[C.OUTPUT_TOKENS] <= 8 and ok[C.PROMPT_TOKENS] > 0
    assert got["r1"][C.ERROR] is None and got["r1"][C.RESPONSE]  # two 503s, then an answer
    assert got["r2"][C.RESPONSE] is None and got["r2"][C.ERROR].startswith("HTTP 503")
    assert got["r2"][C.ERROR].endswith("(after 2 retries)")
    assert got["r3"][C.RESPONSE] is None and got["r3"][C.ERROR].startswith("HTTP 400")
    attempts = stats(server)["attempts"]
    assert attempts[texts[1]] == 3 and attempts[texts[2]] == 3 and attempts[texts[3]] == 1
    assert KEY not in json.dumps(got, default=str)


def test_rate_limit_spaces_requests(server, ray_local, monkeypatch):
    monkeypatch.setenv("CS_TEST_OPENAI_KEY", KEY)
    before = len(stats(server)["arrivals"])
    got = run(ray_local, spec_for(server, {"requests_per_minute": 240}, max_tokens=2), [f"Say {i}." for i in range(5)])
    assert all(r[C.ERROR] is None for r in got.values())
    times = stats(server)["arrivals"][before:]
    assert len(times) == 5 and times[-1] - times[0] >= 4 * 0.25 * 0.9  # 240/min: one start per 0.25 s


def test_key_from_env_never_shown(server, ray_local, monkeypatch):
    monkeypatch.setenv("CS_TEST_OPENAI_KEY", "wrong-key")
    got = run(ray_local, spec_for(server), ["Name a colour."])
    assert got["r0"][C.ERROR].startswith("HTTP 401")
    monkeypatch.delenv("CS_TEST_OPENAI_KEY")
    with pytest.raises(UserError, match="environment variable CS_TEST_OPENAI_KEY"):
        read_api_key(spec_for(server))
    monkeypatch.setenv("CS_TEST_OPENAI_KEY", KEY)
    key = read_api_key(spec_for(server))
    assert KEY not in repr(key) and KEY not in str(key) and key.get() == KEY
    assert os.environ["CS_TEST_OPENAI_KEY"] == KEY


def test_key_echoed_by_the_server_is_scrubbed(echo_server, monkeypatch):
    """The stage on a dict batch (its output rows are what generate/ shards and crowd_excluded/ keep)."""
    monkeypatch.setenv("CS_TEST_OPENAI_KEY", PLAIN_KEY)
    spec = spec_for(echo_server, {"max_retries": 1})
    stage = OpenAIGenerator(spec, pickle.loads(pickle.dumps(read_api_key(spec))), backoff_base_s=0.05)
    got = stage({C.ID: ["r0", "r1"], C.INSTRUCTION: ["REJECT this", "ALWAYS503 again"], C.SHARD: ["s0"] * 2})
    rejected, overloaded = got[C.ERROR]
    assert rejected.startswith("HTTP 400") and "prompt too long" in rejected and "request_headers" in rejected
    assert overloaded.startswith("HTTP 503") and overloaded.endswith("(after 1 retries)")
    assert "Bearer ***" in rejected and '"token": "***"' in rejected  # the echoed header and the bare value
    assert PLAIN_KEY not in json.dumps(got, default=str)
    monkeypatch.setenv("CS_TEST_OPENAI_KEY", "sk-wrong-but-key-shaped-77a1")  # a 401, echoed too
    spec = spec_for(echo_server)
    wrong = OpenAIGenerator(spec, read_api_key(spec))({C.ID: ["r0"], C.INSTRUCTION: ["Hi."], C.SHARD: ["s0"]})
    assert wrong[C.ERROR][0].startswith("HTTP 401") and "key-shaped" not in wrong[C.ERROR][0]
