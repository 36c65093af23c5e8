"""A per-stage time model for `crowdselect run --plan` and `bench/cluster_sim.py` (docs/scaling.md, "Time model").

    seconds = start-up + rows / (replicas x rows per second of one replica)

Pure arithmetic on a handful of figures, each from docs/scaling.md: measured on the project's 2-core
machine (CPU), or published / derived there for an H100 (GPU, estimates until a GPU run replaces them).

| stage, where              | one replica's rate                                              | start-up |
|---------------------------|-----------------------------------------------------------------|----------|
| generate, GPU (vLLM)      | decode tok/s per GPU x GPUs: 3,400 up to 8B, then the power law  | 3 / 6 / 20 min (<= 14B / <= 72B / larger) |
|                           | through 70B (864) and 405B (154) (`gpu_decode_tokens_per_s`)     |          |
| generate, CPU (hf, vllm)  | 6 / size_b tok/s (0.5B: 12, 1.5B: 4, as the quickstart measured) | 25 s     |
| reward, GPU               | 18,500 prefill tok/s per GPU (an 8B classifier at 30% MFU)       | 3 min    |
| reward, CPU               | 173 prefill tok/s (the SmolLM2-135M judge stage, measured)       | 25 s     |
| openai                    | requests_per_minute / 60 shared by the replicas, else 4 rows/s   | 1 s      |
| dry                       | 10,000 rows/s (measured on the 2-core machine, load ~20: 50K     | 3 s      |
|                           | answers of 500 words in 4.5 s, 100K rewards in 11 s, start incl.) |          |

An answer counts `min(max_tokens, ANSWER_TOKENS)` decode tokens (the paper pool's mean answer is ~500 tokens),
a scored row `PROMPT_TOKENS` plus the generators' mean answer. HF on a GPU is modelled as vLLM (faster than
it is). Only the model stages are timed; ingest, crowd and select are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ANSWER_TOKENS = 500  # mean answer of the paper's pool (Magpie-100K-Generator-Zoo), docs/scaling.md
PROMPT_TOKENS = 100  # instruction + chat template, per scored row
GPU_DECODE_8B = 3400.0  # output tok/s per H100 for <= 8B (LambdaLabs vLLM benchmark, FP8, 320 prompts)
GPU_DECODE_70B = 3400.0 * (70 / 8) ** -0.63  # 867: the 8B-70B power law at 70B (864 measured there)
GPU_DECODE_405B = 154.0  # Llama-3.1-405B-FP8 on 8 x H100, per GPU
GPU_PREFILL = 18_500.0  # prefill tok/s per H100: an 8B reward model at 30% MFU
CPU_DECODE_PER_B = 6.0  # tok/s per replica x size in billions (CPU, measured)
CPU_PREFILL = 173.0  # tok/s per replica (CPU judge stage, measured)
OPENAI_ROWS_PER_S = 4.0  # per replica without a rate limit: 16 requests in flight, ~4 s per answer (assumed)
DRY_ROWS_PER_S = 10_000.0  # per replica, through Ray Data and the driver's shard writes (measured, 2 cores)
STARTUP_S = {"dry": 3.0, "openai": 1.0, "cpu": 25.0, "gpu_reward": 180.0}


def gpu_decode_tokens_per_s(size_b: float) -> float:
    """Output tokens/s of one H100 for a model of `size_b` billion parameters (vLLM, saturating batch).

    >>> round(gpu_decode_tokens_per_s(8)), round(gpu_decode_tokens_per_s(70)), round(gpu_decode_tokens_per_s(405))
    (3400, 867, 154)
    """
    if size_b <= 8:
        return GPU_DECODE_8B
    if size_b <= 70:
        return GPU_DECODE_8B * (size_b / 8) ** -0.63
    slope = math.log(GPU_DECODE_405B / GPU_DECODE_70B) / math.log(405 / 70)
    return GPU_DECODE_70B * (size_b / 70) ** slope


def gpu_startup_s(size_b: float) -> float:
    """Engine start on a GPU (weights from local disk, CUDA graphs): 3 min <= 14B, 6 min <= 72B, else 20 min."""
    return 180.0 if size_b <= 14 else 360.0 if size_b <= 72 else 1200.0


@dataclass(frozen=True)
class StageWork:
    """What one model stage must do, and with what.

    kind: "generate" or "reward"; rows: answers to write or to score; tokens_per_row: decode tokens (generate)
    or prefill tokens (reward); size_b: the generator's size (reward models count as 8B-class);
    rows_per_s_cap: a whole-stage rate limit (openai `requests_per_minute / 60`)."""

    kind: str
    backend: str
    rows: int
    tokens_per_row: float
    replicas: int
    gpus_per_replica: float = 0.0
    size_b: float = 8.0
    rows_per_s_cap: float | None = None

    def replica_rows_per_s(self) -> float:
        """Rows per second of one replica."""
        if self.backend == "dry":
            return DRY_ROWS_PER_S
        if self.backend == "openai":
            return self.rows_per_s_cap / self.replicas if self.rows_per_s_cap else OPENAI_ROWS_PER_S
        if self.gpus_per_replica > 0:
            per_gpu = gpu_decode_tokens_per_s(self.size_b) if self.kind == "generate" else GPU_PREFILL
            return per_gpu * self.gpus_per_replica / self.tokens_per_row
        per_replica = CPU_DECODE_PER_B / max(self.size_b, 0.01) if self.kind == "generate" else CPU_PREFILL
        return per_replica / self.tokens_per_row

    def startup_s(self) -> float:
        if self.backend in ("dry", "openai"):
            return STARTUP_S[self.backend]
        if self.gpus_per_replica <= 0:
            return STARTUP_S["cpu"]
        return gpu_startup_s(self.size_b) if self.kind == "generate" else STARTUP_S["gpu_reward"]

    def seconds(self) -> float:
        """Start-up plus the rows spread evenly over the replicas; 0 for a stage with nothing to do."""
        if self.rows <= 0:
            return 0.0
        return self.startup_s() + self.rows / (self.replicas * self.replica_rows_per_s())

    def gpu_seconds_of_work(self) -> float:
        """GPU-seconds of the work alone (no start-up): what the stage costs whatever its replicas."""
        return self.rows / self.replica_rows_per_s() * self.gpus_per_replica


def answer_tokens(max_tokens: int) -> float:
    """Decode tokens of an answer: the configured limit, at most the paper pool's mean answer."""
    return float(min(max_tokens, ANSWER_TOKENS))
