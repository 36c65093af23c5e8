"""`GeneratorSpec`: one member of the crowd, its model and how it is served.

What a generator computes (model, backend, sampling, lengths, engine layout) sits at the top level of its
entry; where and how fast it runs sits under `resources:` (`GeneratorResources`, Ray's side), which never
changes an answer and so never enters the stage's fingerprint. `family` and `size_b` say who the member is
(stability compares siblings by size) and `api_key_env` names where its key is: they do not change the answers
either (`core.config.not_output`). GPUs and batch sizes left unset follow the cluster, filled once at plan time
(`GeneratorResources.resolve`): on GPUs a vLLM replica gets one GPU per tensor x pipeline rank and the batch
layout of `VLLM_GPU_BATCHES` for its card (docs/scaling.md, "Settings that decide GPU throughput"); on CPU 16
rows per batch and Ray's 8 batches in flight.

    generators:
      - name: qwen2.5-7b
        family: qwen2.5
        size_b: 7
        model: Qwen/Qwen2.5-7B-Instruct
        backend: vllm
        resources: {replicas: 4, gpus_per_replica: 1, accelerator_type: H100}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError, not_output, resources_section
from crowdselect.core.secrets import check_env_name, refuse_inline_secret
from crowdselect.runtime.resources import (
    Cluster,
    auto_gpus,
    check_vllm_gpus,
    normalize_accelerator,
    vllm_ranks,
)
from crowdselect.runtime.weights import check_load_format

CPU_BATCH = 16  # rows per batch off GPU (and for the hf and openai backends)
RAY_CONCURRENT_BATCHES = 8  # ray.data.llm's own max_concurrent_batches default (ProcessorConfig)
# vLLM on GPU: (batch_size, max_concurrent_batches) by card. Their product is the requests in flight per
# engine and becomes its max_num_seqs unless engine_kwargs sets one: 1,024 on the cards where vLLM's own `LLM`
# class defaults to 1,024 (>= 70 GB and not A100: vllm/engine/arg_utils.py, get_batch_defaults), 256 elsewhere
# (its default there). ray.data.llm's engines would otherwise run 128 (docs/scaling.md).
VLLM_GPU_BATCHES = {card: (64, 16) for card in ("H100", "H200", "GH200", "B200", "B300", "GB200")}
VLLM_OTHER_GPU_BATCH = (32, 8)


def vllm_gpu_batches(card: str | None) -> tuple[int, int]:
    """(batch_size, max_concurrent_batches) of a vLLM generator on a GPU of type `card` (None: unknown)."""
    return VLLM_GPU_BATCHES.get(card or "", VLLM_OTHER_GPU_BATCH)


@dataclass
class GeneratorResources:
    """A generator's `resources:` section: its engines or actors, their GPUs and CPUs, batch sizes, and the
    openai backend's rate limit and retries. None (auto) is filled at plan time by `resolve`."""

    replicas: int = 1
    gpus_per_replica: float | None = None  # auto: tensor x pipeline ranks (vllm) or 1 (hf) on GPUs, else 0
    accelerator_type: str | None = None  # e.g. "H100"; Ray schedules replicas on that node type
    batch_size: int | None = None  # rows per batch; auto: VLLM_GPU_BATCHES for vLLM on GPU, else CPU_BATCH
    max_concurrent_batches: int | None = None  # vllm: batches in flight per engine; auto: as batch_size
    num_cpus: float = 1.0  # per replica (the whole replica on CPU machines)
    requests_per_minute: float | None = None  # openai: shared by the replicas
    max_retries: int = 5  # openai: retries of a failed request (408/409/429/5xx, connection errors)

    def validate(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas: must be >= 1, got {self.replicas}")
        for name in ("batch_size", "max_concurrent_batches"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError(f"requests_per_minute: must be > 0, got {self.requests_per_minute}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries: must be >= 0, got {self.max_retries}")
        if (self.gpus_per_replica or 0) < 0 or self.num_cpus < 0:
            raise ConfigError(f"gpus_per_replica/num_cpus: must be >= 0, got {self.gpus_per_replica}/{self.num_cpus}")
        self.accelerator_type = normalize_accelerator(self.accelerator_type)

    @property
    def planned(self) -> bool:
        return None not in (self.gpus_per_replica, self.batch_size, self.max_concurrent_batches)

    def resolve(self, spec: GeneratorSpec, cluster: Cluster) -> GeneratorResources:
        """Auto settings filled for `cluster`; a vLLM generator's GPUs checked (`check_vllm_gpus`)."""
        if spec.backend == "openai":
            gpus = 0.0
        else:
            gpus = auto_gpus(self.gpus_per_replica, cluster, vllm_ranks(spec), self.accelerator_type)
        batch, in_flight = CPU_BATCH, RAY_CONCURRENT_BATCHES
        if spec.backend == "vllm":
            check_vllm_gpus(gpus, spec, cluster, "gpus_per_replica", direct=False)
            if gpus > 0:
                batch, in_flight = vllm_gpu_batches(self.accelerator_type or cluster.only_accelerator)
        return dataclasses.replace(
            self, gpus_per_replica=gpus, batch_size=self.batch_size or batch,
            max_concurrent_batches=self.max_concurrent_batches or in_flight)


@dataclass
class DryFailure:
    """A dry generator's rehearsed failure (`fail:`), to rehearse what a real engine does to a job: on reaching
    row `at_id` its replica exits (an engine that dies: Ray restarts the replica and retries its batches,
    a few times), hangs (an engine stuck in an out-of-memory: the stage stalls, `stall_timeout_s` ends it)
    or raises (an engine error: the stage fails). `times`: how often over the whole job (counted in Ray's
    key-value store, so a restarted replica sees it); then the row is answered as usual."""

    mode: Literal["exit", "hang", "error"]
    at_id: str
    times: int = 1

    def validate(self) -> None:
        if self.times < 1:
            raise ConfigError(f"times: must be >= 1, got {self.times}")


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
    fail: DryFailure | None = not_output(None)  # dry only: a rehearsed engine failure (changes no answer)

    def validate(self) -> None:
        if self.fail is not None and self.backend != "dry":
            raise ConfigError(f"fail: rehearses a failure on the dry backend only (generator {self.name!r} "
                              f"is {self.backend})")
        if not self.size_b > 0:  # NaN fails too (also refused when read: not finite)
            raise ConfigError(f"size_b: must be > 0 for generator {self.name!r}, got {self.size_b}")
        if not self.name.strip():
            raise ConfigError("name: must not be empty")
        check_env_name(self.api_key_env)
        check_load_format(self.engine_kwargs, self.allow_pickle_weights)
        refuse_inline_secret(self.sampling, "sampling")  # sampling is sent as the request body and recorded
