"""A causal LM on vLLM directly (`vllm.LLM` inside a stage's actor): label probabilities and generation.

Used by the judge, the Tags baseline and the eval when their spec says `backend: vllm` (generation of the
crowd's answers goes through `ray.data.llm` instead, in `crowdselect.generate.vllm_stage`). The same
interface as `hf.HFCausalLM`: `tokenizer`, `step_probs(prompts, trie)`, `generate(prompts, ...)`; prompts are
token-id lists. Weights load as safetensors unless the spec allows pickle files. An actor given no GPU runs
only vLLM's CPU build: a CUDA build there would take a GPU Ray gave to another actor (Ray 2.60 leaves
CUDA_VISIBLE_DEVICES unset for 0-GPU actors), so it is refused; the GPU share itself is checked against the
engine's tensor x pipeline ranks and memory share when the spec is planned
(`crowdselect.runtime.resources.check_vllm_gpus`). Knows nothing of Ray or rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from crowdselect.core.errors import UserError
from crowdselect.runtime.lm.labels import LabelTrie, Prefix
from crowdselect.runtime.lm.load import gpu_share, load_tokenizer
from crowdselect.runtime.lm.sampling import PLAIN_SAMPLING
from crowdselect.runtime.models import resolve_model

VLLM_TOP_LOGPROBS = 20  # vLLM's default max_logprobs; a label outside the top 20 counts as probability 0


class VllmCausalLM:
    """A causal LM on vLLM (`vllm.LLM` inside the stage's actor); prompts go in as token ids."""

    def __init__(self, spec: Any):
        from vllm import LLM
        from vllm.platforms import current_platform

        if gpu_share(spec) == 0 and not current_platform.is_cpu():
            raise UserError(f"model {spec.model}: this actor was given no GPU, and vLLM's {current_platform.device_name}"
                            " build would start on the node's first GPU anyway; leave resources.num_gpus unset (or "
                            "set it) to give the stage GPUs, or use backend: hf to run it on CPU")
        path = resolve_model(spec.model)
        self.tokenizer = load_tokenizer(spec)
        kwargs: dict[str, Any] = {
            "model": path, "tokenizer": path, "revision": spec.revision, "dtype": spec.dtype,
            "trust_remote_code": spec.trust_remote_code, "max_model_len": spec.max_length + spec.max_new_tokens,
            "max_logprobs": VLLM_TOP_LOGPROBS,
        }
        if not getattr(spec, "allow_pickle_weights", False):  # as load_model: pickle weights can run code
            kwargs["load_format"] = "safetensors"
        kwargs.update(spec.engine_kwargs)
        self.llm = LLM(**kwargs)

    def close(self) -> None:
        """Stop the engine's processes now (else they stop at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def step_probs(self, prompts: list[list[int]], trie: LabelTrie) -> dict[Prefix, np.ndarray]:
        """One 1-token request per (step, prompt); prefix caching makes the extended prompts cheap."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        steps = trie.steps()
        reqs = [TokensPrompt(prompt_token_ids=list(p) + list(prefix)) for prefix in steps for p in prompts]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=VLLM_TOP_LOGPROBS)
        outs = self.llm.generate(reqs, params, use_tqdm=False)
        result: dict[Prefix, np.ndarray] = {}
        for s, prefix in enumerate(steps):
            children = trie.children(prefix)
            arr = np.zeros((len(prompts), len(children)))
            for i in range(len(prompts)):
                top = outs[s * len(prompts) + i].outputs[0].logprobs[0]
                arr[i] = [math.exp(top[c].logprob) if c in top else 0.0 for c in children]
            result[prefix] = arr
        return result

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 seed: int = 0) -> list[str]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, seed=seed, **PLAIN_SAMPLING)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                                 use_tqdm=False)
        return [o.outputs[0].text for o in outs]
