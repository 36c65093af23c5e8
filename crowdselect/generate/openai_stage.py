"""Generation through an OpenAI-compatible HTTP server (a hosted API, or an existing `vllm serve`).

`OpenAIGenerator` is a Ray Data stage class: each actor keeps one aiohttp session and sends a batch's
requests concurrently (at most `max_in_flight` at a time) to `{base_url}/chat/completions`.
- Key: read on the driver from the env var named by `api_key_env`, carried to the actors as a `Secret`
  (never in a repr, log line or error message), sent as `Authorization: Bearer ...`. A failed answer keeps
  at most 300 characters of the server's body, scrubbed of the key first (`scrub_secrets`): a server that
  echoes the request headers must not put the key into the generate/ shards or crowd_excluded/.
- Rate limit: `requests_per_minute` for the whole generator, shared evenly by its `replicas` actors.
- Retries: 408/409/429/5xx answers and connection errors or timeouts are retried with exponential
  backoff and jitter (honouring `Retry-After`), up to `max_retries`; then the row is recorded as failed
  with the last error. Other 4xx answers (e.g. a prompt over the context length) fail the row at once.
ray.data.llm's HttpRequestProcessor raises on a row that fails after its retries (ending the job), so this
stage is the "equivalent stage class" that records the failure on the row instead.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.core.secrets import scrub_secrets
from crowdselect.generate.common import Secret, chat_messages, check_input, columns_of, output_row, row_seed
from crowdselect.generate.spec import GeneratorSpec

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 60.0
REQUEST_TIMEOUT_S = 600.0


class RateLimiter:
    """At most `per_minute` starts per minute, spaced evenly (a leaky bucket), for one actor."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def backoff_s(attempt: int, base: float, retry_after: str | None = None) -> float:
    """Wait before retry `attempt` (0-based): Retry-After if the server gave one, else base * 2^attempt ± 25%.

    >>> backoff_s(0, 1.0, "3")
    3.0
    >>> 0.75 <= backoff_s(0, 1.0) <= 1.25 and 3.0 <= backoff_s(2, 1.0) <= 5.0
    True
    """
    if retry_after:
        try:
            return min(float(retry_after), MAX_BACKOFF_S)
        except ValueError:
            pass
    return min(base * 2**attempt, MAX_BACKOFF_S) * random.uniform(0.75, 1.25)


class OpenAIGenerator:
    """Callable stage: rows {id, instruction, shard} -> rows {id, shard, response, error, tokens}."""

    def __init__(self, spec: GeneratorSpec, api_key: Secret | None, max_in_flight: int = 16,
                 backoff_base_s: float = 1.0):
        self.spec = spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key.get()}"
        res = spec.resources
        per_actor = res.requests_per_minute / res.replicas if res.requests_per_minute else None
        self.max_in_flight = max_in_flight
        self.backoff_base_s = backoff_base_s
        self.per_actor_rpm = per_actor
        self.loop = asyncio.new_event_loop()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        check_input(batch, "OpenAIGenerator")
        rows = list(zip(map(str, batch[C.ID]), map(str, batch[C.INSTRUCTION]), map(str, batch[C.SHARD]),
                        strict=True))
        return columns_of(self.loop.run_until_complete(self._run(rows)))

    async def _run(self, rows: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        import aiohttp

        limiter = RateLimiter(self.per_actor_rpm)
        gate = asyncio.Semaphore(self.max_in_flight)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as session:
            async def one(row):
                async with gate:
                    return await self._request(session, limiter, *row)

            return list(await asyncio.gather(*(one(r) for r in rows)))

    def payload(self, row_id: str, instruction: str) -> dict[str, Any]:
        body = {"model": self.spec.model, "messages": chat_messages(instruction),
                "max_tokens": self.spec.max_tokens, **self.spec.sampling}
        if "seed" in self.spec.sampling:
            body["seed"] = row_seed(self.spec.sampling["seed"], row_id)
        return body

    async def _request(self, session, limiter: RateLimiter, row_id: str, instruction: str,
                       shard: str) -> dict[str, Any]:
        """One row: POST with retries; returns an output row (failed rows carry the last error)."""
        text, error = await post_json(session, self.url, self.payload(row_id, instruction), limiter,
                                      self.spec.resources.max_retries, self.backoff_base_s)
        if text is None:
            return output_row(row_id, instruction, shard, error=error)
        return _parse_reply(row_id, instruction, shard, text)


async def post_json(session, url: str, body: dict[str, Any], limiter: RateLimiter, max_retries: int,
                    backoff_base_s: float) -> tuple[str | None, str | None]:
    """POST `body` as JSON with the retry policy above: (reply text, None) on HTTP 200, else (None, the last
    error). Retryable answers and connection errors are retried up to `max_retries` times."""
    import aiohttp

    error, wait = "no attempt made", 0.0
    for attempt in range(max_retries + 1):
        if attempt:
            await asyncio.sleep(wait)
        await limiter.wait()
        retry_after = None
        try:
            async with session.post(url, json=body) as resp:
                text = await resp.text()
                if resp.status == 200:
                    return text, None
                error = f"HTTP {resp.status}: {excerpt(text)}"
                if resp.status not in RETRY_STATUS:
                    return None, error
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            error = excerpt(f"{type(e).__name__}: {e}")
        wait = backoff_s(attempt, backoff_base_s, retry_after)
    return None, f"{error} (after {max_retries} retries)"


def excerpt(text: str, limit: int = 300) -> str:
    """The first `limit` characters of a server's answer or an exception, secrets scrubbed first (so a cut
    never leaves half a key behind)."""
    return (scrub_secrets(text) or "")[:limit]


def _parse_reply(row_id: str, instruction: str, shard: str, text: str) -> dict[str, Any]:
    import json

    try:
        reply = json.loads(text)
        content = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return output_row(row_id, instruction, shard, error=f"unexpected reply: {excerpt(text)}")
    usage = reply.get("usage") or {}
    return output_row(row_id, instruction, shard, response=content or "", prompt_tokens=usage.get("prompt_tokens") or 0,
                      output_tokens=usage.get("completion_tokens") or 0)


def read_api_key(spec: GeneratorSpec) -> Secret | None:
    """The key from the env var the config names (None when it names none); a missing var is a UserError."""
    if not spec.api_key_env:
        return None
    value = os.environ.get(spec.api_key_env)
    if not value:
        raise UserError(f"generator {spec.name!r}: environment variable {spec.api_key_env} "
                        f"(api_key_env) is not set")
    return Secret(value)


def build_openai_generate(spec: GeneratorSpec, max_in_flight: int = 16, backoff_base_s: float = 1.0):
    """A function Dataset -> Dataset sending the rows to the server from `spec.resources.replicas` actors."""
    key = read_api_key(spec)

    def apply(ds):
        import ray

        return ds.map_batches(
            OpenAIGenerator,
            fn_constructor_kwargs={"spec": spec, "api_key": key, "max_in_flight": max_in_flight,
                                   "backoff_base_s": backoff_base_s},
            batch_size=spec.resources.batch_size,
            compute=ray.data.ActorPoolStrategy(size=spec.resources.replicas),
            num_cpus=min(spec.resources.num_cpus, 0.5),  # waits on the network; leave the cores to the rest
            batch_format="numpy",
        )

    return apply
