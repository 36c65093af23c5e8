"""The evaluation config: one YAML file fills `EvalConfig`; `key=value` overrides on the command line.

    model:      the model under evaluation (a training export folder, HF id or pkg: alias) and how it answers
    judge:      a local judge model (LocalJudgeSpec: a RewardSpec of kind judge) — or —
    judge_api:  an OpenAI-compatible endpoint (DeepSeek-V3, a GPT-4-class API, a local `vllm serve`)
    rating:     judgment (FastChat single-answer grading: the judge explains, then writes [[N]]) |
                logprob (the probability-weighted 1-10 rating read after `Rating: [[`, local judge only)
    pairwise:   against a baseline model's answers (optional): Arena-Hard-Auto's scoring, or FastChat pair-v2
    proxy:      judge-free proxy: reward models score the answers to held-out instructions (optional)

Generation defaults are FastChat's (lm-sys/FastChat, fastchat/llm_judge/gen_model_answer.py and common.py):
answers of up to 1024 new tokens sampled at the category's `temperature_config` temperature, judgments of up
to 2048 tokens at temperature 0. `model.temperature: 0` answers greedily instead. Settings only; no Ray, no
models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError, load_config, not_output, resources_section
from crowdselect.core.secrets import check_env_name
from crowdselect.reward.config import RewardSpec, refuse_dry
from crowdselect.runtime.ray_setup import RayConfig
from crowdselect.runtime.resources import PoolResources
from crowdselect.runtime.weights import check_load_format


@dataclass
class EvalModelResources(PoolResources):
    """The `resources:` section of the model under evaluation (answering actors, GPUs, CPUs, batch size)."""

    batch_size: int = 8


@dataclass
class EvalModelSpec:
    """The model under evaluation (or the pairwise baseline) and how it answers."""

    model: str  # folder (e.g. a training export), HF id, or pkg: alias
    name: str | None = None  # label in the report (default: the model path)
    backend: Literal["hf", "vllm"] = "hf"
    revision: str | None = None
    chat_template: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False  # also load pytorch_model.bin (pickle can run code); else safetensors only
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    max_length: int = 4096  # conversation tokens; a longer conversation is a failed row
    max_new_tokens: int = 1024  # FastChat's --max-new-token
    # fastchat: the question category's temperature (FastChat's temperature_config: writing and roleplay 0.7,
    # stem and humanities 0.1, others 0, an unknown category 0.7); a number: that temperature everywhere
    # (0: greedy, the same answers on every rerun)
    temperature: Literal["fastchat"] | float = "fastchat"
    seed: int = 0
    resources: EvalModelResources = resources_section(EvalModelResources)

    def validate(self) -> None:
        check_load_format(self.engine_kwargs, self.allow_pickle_weights)
        if self.temperature != "fastchat" and self.temperature < 0:
            raise ConfigError(f"temperature: must be `fastchat` or a number >= 0, got {self.temperature}")
        if self.max_new_tokens < 1 or self.max_length < 1:
            raise ConfigError("max_new_tokens and max_length must be >= 1")


@dataclass
class LocalJudgeSpec(RewardSpec):
    """A local judge model for the eval: a RewardSpec of kind `judge` with a judge's budgets: FastChat's 2048
    judgment tokens, and prompts of up to 4096 tokens (two questions, two 1024-token answers, references)."""

    kind: Literal["classifier", "judge"] = "judge"
    max_length: int = 4096
    max_new_tokens: int = 2048


@dataclass
class ApiResources:
    """An API judge's `resources:` section: how many actors send requests, how many at once, how fast."""

    requests_per_minute: float | None = None  # shared by the replicas
    max_retries: int = 5
    max_in_flight: int = 8  # concurrent requests per replica
    replicas: int = 1
    batch_size: int = 16

    def validate(self) -> None:
        if self.max_retries < 0 or self.replicas < 1 or self.max_in_flight < 1 or self.batch_size < 1:
            raise ConfigError("max_retries must be >= 0, replicas, max_in_flight and batch_size >= 1")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError(f"requests_per_minute: must be > 0, got {self.requests_per_minute}")


@dataclass
class ApiJudgeSpec:
    """A judge behind an OpenAI-compatible `/chat/completions` endpoint; requests and retries are the
    openai generation backend's (crowdselect/generate/openai_stage.py)."""

    model: str  # e.g. deepseek-chat, gpt-4o, or the name a local `vllm serve` gives its model
    base_url: str  # e.g. https://api.deepseek.com/v1, http://127.0.0.1:8000/v1
    name: str | None = None  # label in the report (default: the model)
    api_key_env: str | None = not_output(None)  # env var holding the key (read on the driver, never logged)
    max_tokens: int = 2048  # FastChat's judge budget (a judgment cut before its [[N]] is unparseable)
    temperature: float = 0.0
    resources: ApiResources = resources_section(ApiResources)

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url: must start with http:// or https://, got {self.base_url!r}")
        check_env_name(self.api_key_env)


@dataclass
class PairwiseConfig:
    """The model against a baseline, each question judged twice with the positions swapped.

    mode `arena-hard` (default): Arena-Hard-Auto's judge prompt and five labels ([[A>>B]] ... [[B>>A]]), a
    judgment without a label asked to finish up to `attempts` times, strong verdicts counted `weight` times,
    a question with an unreadable game dropped (and counted), the Bradley-Terry win rate against the baseline
    with a bootstrap over battles (crowdselect/eval/arena_hard.py). Mode `pair-v2`: FastChat's pair-v2 prompt
    ([[A]] / [[B]] / [[C]]) and show_result.py's per-question outcome (crowdselect/eval/pairwise.py)."""

    baseline: EvalModelSpec | None = None  # answers generated here (e.g. the base model before training)
    baseline_answers: str | None = None  # or a FastChat / Arena-Hard model_answer jsonl
    questions: str | None = None  # Arena-Hard question.jsonl; default: the MT-bench questions of this eval
    limit: int | None = None
    mode: Literal["arena-hard", "pair-v2"] = "arena-hard"
    attempts: int = 2  # arena-hard: Arena-Hard-Auto's number_of_judgment_attempts
    weight: int = 3  # arena-hard: a strong verdict ([[A>>B]]) counts as this many battles (show_result --weight)
    bootstrap: int = 100  # resamples for the 95% interval (Arena-Hard-Auto's --num-rounds)
    seed: int = 0

    def validate(self) -> None:
        if (self.baseline is None) == (self.baseline_answers is None):
            raise ConfigError("give one of baseline (a model) or baseline_answers (a file)")
        if self.attempts < 1 or self.weight < 1 or self.bootstrap < 1:
            raise ConfigError("attempts, weight and bootstrap must be >= 1")


@dataclass
class ProxyConfig:
    """Judge-free proxy (for CPU runs): the reward models score the model's answers to held-out instructions."""

    instructions: str  # JSONL with `instruction` (or `messages`) rows not in the training selection
    rewards: list[RewardSpec] = field(default_factory=list)
    limit: int | None = None


@dataclass
class EvalConfig:
    model: EvalModelSpec
    judge: LocalJudgeSpec | None = None
    judge_api: ApiJudgeSpec | None = None
    rating: Literal["judgment", "logprob"] = "judgment"
    mtbench: bool = True  # false: only the proxy (and pairwise) are run
    turns: int = 2
    limit: int | None = None  # first N questions (after the filters below)
    per_category: int | None = None  # first N questions of each category
    categories: list[str] = field(default_factory=list)
    questions: str | None = None  # FastChat question.jsonl format; default: MT-bench from the package
    reference_answers: str | None = None  # FastChat reference-answer format; default: the package's GPT-4 ones
    judge_prompts: str | None = None  # FastChat judge_prompts.jsonl format; default: the package's
    pairwise: PairwiseConfig | None = None
    proxy: ProxyConfig | None = None
    out: str | None = None
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> None:
        if self.turns not in (1, 2):
            raise ConfigError(f"turns: must be 1 or 2, got {self.turns}")
        for key in ("limit", "per_category"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        refuse_dry(self.judge, "judge")
        for i, spec in enumerate(self.proxy.rewards if self.proxy else []):
            refuse_dry(spec, f"proxy.rewards[{i}]")
        if self.judge is not None and self.judge_api is not None:
            raise ConfigError("judge, judge_api: give one judge, not both")
        if self.judge is not None and self.judge.kind != "judge":
            raise ConfigError("judge.kind: must be `judge` (an LLM that rates answers), got "
                              f"{self.judge.kind!r}")
        if self.rating == "logprob" and self.judge is None and self.needs_judge:
            raise ConfigError("rating: logprob reads a local judge's next-token probabilities; set `judge:`")
        if self.needs_judge and self.judge is None and self.judge_api is None:
            raise ConfigError("judge: MT-bench and pairwise need a judge (judge: or judge_api:); "
                              "for a judge-free run set mtbench: false and a proxy: section")
        if not self.mtbench and self.proxy is None and self.pairwise is None:
            raise ConfigError("mtbench: false leaves nothing to evaluate (add proxy: or pairwise:)")

    @property
    def needs_judge(self) -> bool:
        return self.mtbench or self.pairwise is not None

    @property
    def judge_label(self) -> dict[str, Any]:
        """Who judged, for summaries and lineage."""
        if self.judge_api is not None:
            j = self.judge_api
            return {"name": j.name or j.model, "model": j.model, "endpoint": j.base_url, "rating": self.rating}
        if self.judge is not None:
            return {"name": self.judge.name, "model": self.judge.model, "rating": self.rating}
        return {"name": None, "model": None, "rating": "proxy"}


def load_eval_config(path: str, out: str | None = None, overrides: list[str] | None = None) -> EvalConfig:
    """YAML file < `--out` < `key=value` overrides (`load_config`, as every phase); validated before any work."""
    cfg = load_config(EvalConfig, path, list(overrides or []), flags={"out": out})
    if not cfg.out:
        raise ConfigError(f"{path}: out: no output directory (set `out:` or pass --out)")
    return cfg
