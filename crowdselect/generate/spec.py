"""`GeneratorSpec`: one member of the crowd, its model and how it is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError
from crowdselect.core.secrets import check_env_name, refuse_inline_secret
from crowdselect.runtime.weights import check_load_format


@dataclass
class GeneratorSpec:
    """One member of the crowd. `family` + `size_b` drive the stability metric."""

    name: str
    family: str
    size_b: float
    # Where the answers come from when crowdselect generates them (`crowdselect run`); unused by `select`.
    model: str | None = None  # HF hub id or local folder
    backend: Literal["vllm", "hf", "openai"] = "vllm"
    revision: str | None = None
    chat_template: str | None = None  # a Jinja template, for models that ship none
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, seed, ...
    max_tokens: int = 512
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # passed through to vLLM
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    replicas: int = 1
    gpus_per_replica: float = 0.0
    accelerator_type: str | None = None  # e.g. "H100"; Ray schedules replicas on that node type
    batch_size: int = 16
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False  # hf: also load pytorch_model.bin (pickle: can run code); safetensors only
    # hf/vllm: prompt + answer token limit (None: vLLM's engine_kwargs or the model's own); a longer prompt
    # is recorded as a failed row, never truncated
    max_model_len: int | None = None
    dtype: str = "auto"  # hf/vllm weights dtype ("auto", "bfloat16", "float32", ...)
    num_cpus: float = 1.0  # per replica (the whole replica on CPU machines)
    # OpenAI-compatible HTTP backend
    base_url: str | None = None
    api_key_env: str | None = None  # name of the env var that holds the key; the key is never logged
    requests_per_minute: float | None = None
    max_retries: int = 5

    def validate(self) -> None:
        if not self.size_b > 0:  # NaN fails too (also refused when read: not finite)
            raise ConfigError(f"size_b: must be > 0 for generator {self.name!r}, got {self.size_b}")
        if not self.name.strip():
            raise ConfigError("name: must not be empty")
        check_env_name(self.api_key_env)
        check_load_format(self.engine_kwargs, self.allow_pickle_weights)
        refuse_inline_secret(self.sampling, "sampling")  # sampling is sent as the request body and recorded
