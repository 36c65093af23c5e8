"""Causal-LM plumbing shared by the judge, the baselines and the eval, on HF transformers or vLLM.

`load_causal_lm(spec)` returns an object with
    tokenizer                                   HF tokenizer (the spec's chat_template override applied)
    step_probs(prompts, trie) -> {prefix: (n, n_children)}   next-token probabilities at the label trie's steps
    generate(prompts, max_new_tokens, temperature, seed) -> list[str]
and, on HF only, `response_nll(prompts, responses) -> (n,)` (mean NLL of the response tokens; used by IFD).
Prompts are token-id lists, already rendered with the chat template (`encode_chat`). `spec` is any object
with the fields model, revision, dtype, trust_remote_code, model_kwargs, engine_kwargs, chat_template,
max_length, max_new_tokens, and optionally allow_pickle_weights (RewardSpec, the eval's model config).
Loading, chat encoding and padding come from `crowdselect.runtime.causal_lm` (re-exported here:
encode_chat, load_tokenizer, pick_device, pick_dtype). This module knows nothing of Ray or rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from crowdselect.reward.scoring import LabelTrie, Prefix
from crowdselect.runtime.causal_lm import (
    encode_chat,
    left_pad,
    load_model,
    load_tokenizer,
    pick_device,
    pick_dtype,
)
from crowdselect.runtime.models import resolve_model

VLLM_TOP_LOGPROBS = 20  # vLLM's default max_logprobs; a label outside the top 20 counts as probability 0
# Sampling is the temperature alone, on both backends: HF's generate would otherwise fill unset fields from the
# model's generation_config.json (a repetition penalty, top_k, top_p) and its own top_k 50, where vLLM's
# SamplingParams take none of them. Stop tokens still come from the model (eos_token_id) on both.
PLAIN_SAMPLING = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}

__all__ = ["HFCausalLM", "VllmCausalLM", "encode_chat", "load_causal_lm", "load_tokenizer", "pick_device",
           "pick_dtype"]


def load_causal_lm(spec: Any, backend: str | None = None) -> HFCausalLM | VllmCausalLM:
    """The spec's model on its backend (`spec.backend` unless `backend` is given)."""
    chosen = backend or spec.backend
    return VllmCausalLM(spec) if chosen == "vllm" else HFCausalLM(spec)


class HFCausalLM:
    """A causal LM on transformers: CUDA when visible, else CPU; left padding; position ids from the mask."""

    def __init__(self, spec: Any):
        import torch

        self.device = pick_device()
        self.tokenizer = load_tokenizer(spec)
        self.model = load_model(spec, self.device)
        self._torch = torch

    def _pad(self, seqs: list[list[int]]) -> tuple[Any, Any, Any]:
        return left_pad(seqs, self.tokenizer.pad_token_id, self.device)

    def _last_probs(self, out: Any, children: list[int]) -> np.ndarray:
        probs = self._torch.softmax(out.logits[:, -1].float(), dim=-1)
        return probs[:, children].cpu().numpy().astype(np.float64)

    def step_probs(self, prompts: list[list[int]], trie: LabelTrie) -> dict[Prefix, np.ndarray]:
        """Child-token probabilities at each trie step; the first extension reuses the prompt's KV cache."""
        torch = self._torch
        steps = trie.steps()
        with torch.inference_mode():
            ids, mask, pos = self._pad(prompts)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                             use_cache=len(steps) > 1, logits_to_keep=1)
            result = {(): self._last_probs(out, trie.children(()))}
            cache = out.past_key_values if len(steps) > 1 else None
            for prefix in steps[1:]:
                if cache is not None:  # one extra token step on the cached prompt
                    ext = torch.tensor([list(prefix)] * len(prompts), device=self.device)
                    m = torch.cat([mask, torch.ones_like(ext)], dim=1)
                    p = pos[:, -1:] + 1 + torch.arange(len(prefix), device=self.device)
                    o = self.model(input_ids=ext, attention_mask=m, position_ids=p, past_key_values=cache,
                                   use_cache=False, logits_to_keep=1)
                    cache = None  # extended in place: later prefixes recompute from scratch (scales > 19 only)
                else:
                    ids2, mask2, pos2 = self._pad([list(s) + list(prefix) for s in prompts])
                    o = self.model(input_ids=ids2, attention_mask=mask2, position_ids=pos2, logits_to_keep=1)
                result[prefix] = self._last_probs(o, trie.children(prefix))
        return result

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 seed: int = 0) -> list[str]:
        """Batched generation (greedy at temperature 0, else sampling at `temperature` with PLAIN_SAMPLING, as
        the vLLM backend); returns the new text of each prompt."""
        from transformers import GenerationConfig

        torch = self._torch
        model_cfg, sample = self.model.generation_config, temperature > 0
        plain = PLAIN_SAMPLING if sample else {"repetition_penalty": 1.0}  # greedy: the rest are not read
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=sample,
                               temperature=temperature if sample else 1.0, num_beams=1, no_repeat_ngram_size=0,
                               **plain, bos_token_id=model_cfg.bos_token_id, eos_token_id=model_cfg.eos_token_id,
                               pad_token_id=self.tokenizer.pad_token_id)
        torch.manual_seed(seed)
        with torch.inference_mode():
            ids, mask, _ = self._pad(prompts)
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        return self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)

    def response_nll(self, prompts: list[list[int]], responses: list[list[int]]) -> np.ndarray:
        """Mean negative log-likelihood of each response's tokens after its prompt. Returns (n,).

        Left padding puts every response at the end, so only the last R + 1 positions need logits
        (R = longest response), which keeps memory at n x R x vocab.
        """
        torch = self._torch
        if any(not p for p in prompts) or any(not r for r in responses):
            raise ValueError("response_nll needs a non-empty prompt and response per row")
        width = max(len(r) for r in responses)
        with torch.inference_mode():
            ids, mask, pos = self._pad([list(p) + list(r) for p, r in zip(prompts, responses, strict=True)])
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=width + 1)
            logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
            token_logp = logp.gather(-1, ids[:, -width:].unsqueeze(-1)).squeeze(-1)  # (n, R)
            lengths = torch.tensor([len(r) for r in responses], device=self.device)
            valid = torch.arange(width, device=self.device)[None, :] >= (width - lengths)[:, None]
            nll = -(token_logp * valid).sum(dim=1) / lengths
        return nll.cpu().numpy().astype(np.float64)


class VllmCausalLM:
    """A causal LM on vLLM (`vllm.LLM` inside the stage's actor); prompts go in as token ids."""

    def __init__(self, spec: Any):
        from vllm import LLM

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
