"""A small OpenAI-compatible chat server around a real HF model, for the openai backend's tests.

    python tests/stage/openai_server.py --port 8123 --model DIR --key SECRET [--echo-headers]

POST /v1/chat/completions answers greedily with the model (the answers are real). Test hooks in the user
message: `FLAKY` -> 503 on the first two attempts of that message; `ALWAYS503` -> 503 every time;
`REJECT` -> 400. With `--echo-headers` every error body echoes the request's headers and the bearer token
it carried (as a careless server might). GET /stats: attempts per message and the arrival times. `SAY:text` -> replies `text` verbatim (to the end of
that line; a scripted judge's verdict, so rating parsing is checked through the HTTP path). A follow-up (the
last message holds no `SAY:` and an earlier assistant turn exists) replies what follows `THEN:` in the first
user message (a judge that gives its verdict when asked to go on). `--die-after N`: after N chat replies the
process exits on the next request (a judge server that goes away midway; later requests find nobody there).
Listens on 127.0.0.1 only.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import torch
from aiohttp import web
from transformers import AutoModelForCausalLM, AutoTokenizer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, key: str, *flags: str, port: int | None = None):
    """For tests: run this server in a subprocess on `port` (default: a free one); yields its base URL until
    closed."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--key", key, "--model", model_dir,
                             *flags])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/v1/models", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, "the test server died while starting"
                time.sleep(0.5)
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)

def make_app(model_dir: str, key: str, echo_headers: bool = False, die_after: int | None = None) -> web.Application:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    attempts: dict[str, int] = {}
    arrivals: list[float] = []
    replies = [0]
    lock = asyncio.Lock()

    def generate(messages, max_tokens):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        new = out[0, ids["input_ids"].shape[1]:]
        return tok.decode(new, skip_special_tokens=True), ids["input_ids"].shape[1], len(new)

    def error(request: web.Request, message: str, status: int) -> web.Response:
        body: dict = {"error": {"message": message}}
        if echo_headers:
            auth = request.headers.get("Authorization", "")
            body["token"] = auth.split(" ", 1)[-1]
            body["request_headers"] = dict(request.headers)
        return web.json_response(body, status=status)

    async def chat(request: web.Request) -> web.Response:
        if die_after is not None and replies[0] >= die_after:
            os._exit(0)  # gone midway: this request's connection drops, later ones are refused
        arrivals.append(time.monotonic())
        if request.headers.get("Authorization") != f"Bearer {key}":
            return error(request, "invalid api key", 401)
        body = await request.json()
        text = body["messages"][-1]["content"]
        attempts[text] = attempts.get(text, 0) + 1
        if "ALWAYS503" in text or ("FLAKY" in text and attempts[text] <= 2):
            return error(request, "overloaded", 503)
        if "REJECT" in text:
            return error(request, "prompt too long", 400)
        first = next(m["content"] for m in body["messages"] if m["role"] == "user")
        followup = any(m["role"] == "assistant" for m in body["messages"])
        if "SAY:" in text or (followup and "THEN:" in first):
            reply = text.split("SAY:", 1)[1] if "SAY:" in text else first.split("THEN:", 1)[1]
            return counted(web.json_response({"id": "chatcmpl-test", "object": "chat.completion",
                                              "model": body["model"], "choices": [{"index": 0, "message": {
                                                  "role": "assistant", "content": reply.split("\n", 1)[0]},
                                                  "finish_reason": "stop"}]}))
        async with lock:  # one generation at a time: the model is not thread-safe
            reply, n_in, n_out = await asyncio.to_thread(generate, body["messages"], int(body.get("max_tokens", 16)))
        return counted(web.json_response({
            "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}))

    def counted(response: web.Response) -> web.Response:
        replies[0] += 1
        return response

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"attempts": attempts, "arrivals": arrivals})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "test-model", "object": "model"}]})

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", chat), web.get("/stats", stats), web.get("/v1/models", models)])
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--echo-headers", action="store_true", help="echo the request headers in error bodies")
    p.add_argument("--die-after", type=int, default=None, help="exit right after this many chat replies")
    a = p.parse_args()
    web.run_app(make_app(a.model, a.key, a.echo_headers, a.die_after), host="127.0.0.1", port=a.port, print=None)
