"""Judging: a judge writes a judgment for each prompt (an OpenAI-compatible endpoint or a local model), or,
with `rating: logprob`, a local judge's next-token distribution gives a probability-weighted rating.

`JudgmentWriter` is the Ray Data stage of written judgments: rows {judge_system, judge_user} ->
+ judgment (text) and judge_error. A row may carry a follow-up (`judge_previous`, the judge's earlier replies,
and `judge_followup`, the user message after each): the judge then continues that conversation
(Arena-Hard-Auto's re-ask of a judgment without a verdict label). Requests, retries and rate limits are the openai generation backend's
(`post_json`, `RateLimiter`, the key read on the driver as a `Secret`). Ratings and verdicts are read from
the text afterwards (crowdselect/eval/verdicts.py), so an unreadable judgment stays visible.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from crowdselect.core import columns as C
from crowdselect.eval.config import ApiJudgeSpec, EvalConfig
from crowdselect.generate.common import Secret
from crowdselect.reward.config import RewardSpec
from crowdselect.runtime.lm.batches import object_column, run_microbatches

JUDGMENT, JUDGE_ERROR, JUDGE_MASS = "judgment", "judge_error", "judge_mass"
SYSTEM, USER = "judge_system", "judge_user"
PREVIOUS, FOLLOWUP = "judge_previous", "judge_followup"


def judge_chat(system: Any, user: Any, previous: Any = None, followup: Any = None) -> list[dict[str, str]]:
    """The judge's messages: system (when given), user, then each earlier reply followed by `followup`.

    >>> [m["role"] for m in judge_chat("", "judge this", ["no label yet"], "finish")]
    ['user', 'assistant', 'user']
    """
    chat = [*([{"role": "system", "content": str(system)}] if system else []), {"role": "user", "content": str(user)}]
    if previous is not None and isinstance(followup, str):
        for reply in previous:
            chat += [{"role": "assistant", "content": str(reply)}, {"role": "user", "content": followup}]
    return chat


class JudgmentWriter:
    """Ray Data stage: {judge_system, judge_user} -> + judgment, judge_error (one judge per actor)."""

    def __init__(self, api: ApiJudgeSpec | None = None, local: RewardSpec | None = None,
                 api_key: Secret | None = None, backoff_base_s: float = 1.0):
        self.api, self.local, self.backoff_base_s = api, local, backoff_base_s
        if api is not None:
            self.url = api.base_url.rstrip("/") + "/chat/completions"
            self.headers = {"Content-Type": "application/json"}
            if api_key is not None:
                self.headers["Authorization"] = f"Bearer {api_key.get()}"
            self.loop = asyncio.new_event_loop()
        else:
            from crowdselect.runtime.lm.backend import load_causal_lm

            self.lm = load_causal_lm(local)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch[USER])
        previous, followup = batch.get(PREVIOUS, [None] * n), batch.get(FOLLOWUP, [None] * n)
        chats = [judge_chat(*row) for row in zip(batch[SYSTEM], batch[USER], previous, followup, strict=True)]
        texts, errors = self._api(chats) if self.api is not None else self._local(chats)
        out = dict(batch)
        out[JUDGMENT], out[JUDGE_ERROR] = object_column(texts), object_column(errors)
        return out

    def _local(self, chats: list[list[dict[str, str]]]) -> tuple[list[str | None], list[str | None]]:
        from crowdselect.runtime.lm.chat import encode_chat

        s = self.local
        prompts = [encode_chat(self.lm.tokenizer, c, add_generation_prompt=True) for c in chats]
        texts: list[str | None] = [None] * len(prompts)
        errors: list[str | None] = [None] * len(prompts)
        todo = [i for i, p in enumerate(prompts) if len(p) <= s.max_length]
        for i in set(range(len(prompts))) - set(todo):
            errors[i] = f"judge prompt of {len(prompts[i])} tokens > judge.max_length {s.max_length}"
        out, errs = run_microbatches([prompts[i] for i in todo], [len(prompts[i]) for i in todo], s.resources.batch_size,
                                     s.tokens_per_forward,
                                     lambda ps: self.lm.generate(ps, s.max_new_tokens, 0.0, 0), stage="judge")
        for i, text, err in zip(todo, out, errs, strict=True):
            texts[i], errors[i] = (None, err) if err is not None else (text.strip(), None)
        return texts, errors

    def _api(self, chats: list[list[dict[str, str]]]) -> tuple[list[str | None], list[str | None]]:
        results = self.loop.run_until_complete(self._run(chats))
        return [r[0] for r in results], [r[1] for r in results]

    async def _run(self, chats: list[list[dict[str, str]]]) -> list[tuple[str | None, str | None]]:
        import aiohttp

        from crowdselect.generate.openai_stage import REQUEST_TIMEOUT_S, RateLimiter, post_json

        a, res = self.api, self.api.resources
        limiter = RateLimiter(res.requests_per_minute / res.replicas if res.requests_per_minute else None)
        gate = asyncio.Semaphore(res.max_in_flight)
        async with aiohttp.ClientSession(headers=self.headers,
                                         timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as session:
            async def one(messages):
                body = {"model": a.model, "messages": messages, "max_tokens": a.max_tokens,
                        "temperature": a.temperature}
                async with gate:
                    text, error = await post_json(session, self.url, body, limiter, res.max_retries,
                                                  self.backoff_base_s)
                return (None, error) if text is None else _reply_content(text)

            return list(await asyncio.gather(*(one(m) for m in chats)))


def _reply_content(text: str) -> tuple[str | None, str | None]:
    try:
        return str(json.loads(text)["choices"][0]["message"]["content"] or ""), None
    except (ValueError, KeyError, IndexError, TypeError):
        return None, f"unexpected reply: {text[:300]}"


def write_judgments(cfg: EvalConfig, rows: list[dict[str, Any]], backoff_base_s: float = 1.0) -> list[dict[str, Any]]:
    """Ray Data: each row's written judgment (rows keep their order and fields)."""
    import ray

    from crowdselect.generate.openai_stage import read_api_key
    from crowdselect.reward.wiring import pool_kwargs

    if not rows:
        return []
    keyed = [{**r, "_row": i} for i, r in enumerate(rows)]
    ds = ray.data.from_items(keyed)
    if cfg.judge_api is not None:
        a = cfg.judge_api
        ctor = {"api": a, "api_key": read_api_key(a), "backoff_base_s": backoff_base_s}
        kwargs = {"batch_size": a.resources.batch_size, "compute": ray.data.ActorPoolStrategy(size=a.resources.replicas),
                  "num_cpus": 0.25}  # waits on the network
    else:
        ctor, kwargs = {"local": cfg.judge}, pool_kwargs(cfg.judge)
    done = ds.map_batches(JudgmentWriter, fn_constructor_kwargs=ctor, **kwargs).take_all()
    done.sort(key=lambda r: r["_row"])
    return [{k: v for k, v in r.items() if k != "_row"} for r in done]


def logprob_ratings(cfg: EvalConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ray Data: the local judge's probability-weighted 1-10 rating of each row (`rating: logprob`)."""
    import ray

    from crowdselect.reward.judge import JudgeScorer
    from crowdselect.reward.wiring import pool_kwargs

    ds = ray.data.from_items(rows)
    ctor = {"spec": cfg.judge, "output_column": C.SCORE, "model_column": None, "mass_column": JUDGE_MASS,
            "prompt_column": "judge_prompt", "system_column": SYSTEM}
    ds = ds.map_batches(JudgeScorer, fn_constructor_kwargs=ctor, **pool_kwargs(cfg.judge))
    by_key = {(r["question_id"], r["turn"]): r for r in ds.take_all()}
    return [by_key[(r["question_id"], r["turn"])] for r in rows]
