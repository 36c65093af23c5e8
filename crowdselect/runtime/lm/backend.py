"""The spec's causal LM on its backend: `load_causal_lm(spec)` -> `HFCausalLM` or `VllmCausalLM`.

Both offer
    tokenizer                                   HF tokenizer (the spec's chat_template override applied)
    step_probs(prompts, trie) -> {prefix: (n, n_children)}   next-token probabilities at the label trie's steps
    generate(prompts, max_new_tokens, temperature, seed) -> list[str]
and, on HF only, `response_nll(prompts, responses) -> (n,)` (mean NLL of the response tokens; used by IFD).
`spec` is any object with the fields model, revision, dtype, trust_remote_code, model_kwargs, engine_kwargs,
chat_template, max_length, max_new_tokens, and optionally allow_pickle_weights and backend (RewardSpec, the
eval's model config). Used by the judge, the baselines and the eval.
"""

from __future__ import annotations

from typing import Any

from crowdselect.runtime.lm.hf import HFCausalLM
from crowdselect.runtime.lm.vllm import VllmCausalLM


def load_causal_lm(spec: Any, backend: str | None = None) -> HFCausalLM | VllmCausalLM:
    """The spec's model on its backend (`spec.backend` unless `backend` is given)."""
    chosen = backend or spec.backend
    return VllmCausalLM(spec) if chosen == "vllm" else HFCausalLM(spec)
