"""`GeneratorSpec`: one member of the crowd, its model and how it is served.

What a generator computes (model, backend, sampling, lengths, engine layout) sits at the top level of its
entry; where and how fast it runs sits under `resources:` (`GeneratorResources`, Ray's side), which never
changes an answer and so never enters the stage's fingerprint. `family` and `size_b` say who the member is
(stability compares siblings by size) and `api_key_env` names where its key is: they do not change the answers
either (`core.config.not_output`).

    generators:
      - name: qwen2.5-7b
        family: qwen2.5
        size_b: 7
        model: Qwen/Qwen2.5-7B-Instruct
        backend: vllm
        resources: {replicas: 4, gpus_per_replica: 1, accelerator_type: H100}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError, not_output, resources_section
from crowdselect.core.secrets import check_env_name, refuse_inline_secret
from crowdselect.runtime.weights import check_load_format


@dataclass
class GeneratorResources:
    """A generator's `resources:` section: its engines or actors, their GPUs and CPUs, batch size, and the
    openai backend's rate limit and retries."""

    replicas: int = 1
    gpus_per_replica: float = 0.0
    accelerator_type: str | None = None  # e.g. "H100"; Ray schedules replicas on that node type
    batch_size: int = 16
    num_cpus: float = 1.0  # per replica (the whole replica on CPU machines)
    requests_per_minute: float | None = None  # openai: shared by the replicas
    max_retries: int = 5  # openai: retries of a failed request (408/409/429/5xx, connection errors)

    def validate(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas: must be >= 1, got {self.replicas}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError(f"requests_per_minute: must be > 0, got {self.requests_per_minute}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries: must be >= 0, got {self.max_retries}")
        if self.gpus_per_replica < 0 or self.num_cpus < 0:
            raise ConfigError(f"gpus_per_replica/num_cpus: must be >= 0, got {self.gpus_per_replica}/{self.num_cpus}")


@dataclass
class GeneratorSpec:
    """One member of the crowd. `family` + `size_b` drive the stability metric."""

    name: str
    family: str = not_output()
    size_b: float = not_output()
    # Where the answers come from when crowdselect generates them (`crowdselect run`); unused by `select`.
    model: str | None = None  # HF hub id or local folder
    backend: Literal["vllm", "hf", "openai", "dry"] = "vllm"  # dry: deterministic answers, no model (rehearsals)
    revision: str | None = None
    chat_template: str | None = None  # a Jinja template, for models that ship none
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, seed, ...
    max_tokens: int = 512
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # passed through to vLLM
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False  # hf: also load pytorch_model.bin (pickle: can run code); safetensors only
    # hf/vllm: prompt + answer token limit (None: vLLM's engine_kwargs or the model's own); a longer prompt
    # is recorded as a failed row, never truncated
    max_model_len: int | None = None
    dtype: str = "auto"  # hf/vllm weights dtype ("auto", "bfloat16", "float32", ...)
    # OpenAI-compatible HTTP backend
    base_url: str | None = None
    api_key_env: str | None = not_output(None)  # name of the env var that holds the key; the key is never logged
    resources: GeneratorResources = resources_section(GeneratorResources)

    def validate(self) -> None:
        if not self.size_b > 0:  # NaN fails too (also refused when read: not finite)
            raise ConfigError(f"size_b: must be > 0 for generator {self.name!r}, got {self.size_b}")
        if not self.name.strip():
            raise ConfigError("name: must not be empty")
        check_env_name(self.api_key_env)
        check_load_format(self.engine_kwargs, self.allow_pickle_weights)
        refuse_inline_secret(self.sampling, "sampling")  # sampling is sent as the request body and recorded
