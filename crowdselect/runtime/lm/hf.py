"""HF transformers causal LM: the one HF generation loop, next-token probabilities, response NLL.

    new = generate_tokens(model, tok, prompts, max_new_tokens, device, seed, **options)  # token ids per prompt
    lm  = HFCausalLM(spec)        # tokenizer + model; step_probs, generate, response_nll

`generate_tokens` is the only place the tree calls transformers' `generate`: the HF crowd generator
(`crowdselect.generate.hf_stage`) and `HFCausalLM.generate` (the Tags baseline, the eval's answers and
judgments) both run it. Prompts are token-id lists, already rendered with the chat template
(`chat.encode_chat`), left-padded here (`batches.left_pad`). `spec` is any object with the loading fields of
`load.load_model` (RewardSpec, the eval's model config, `load.ModelSource`). Knows nothing of Ray or rows.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from crowdselect.runtime.lm.batches import left_pad
from crowdselect.runtime.lm.labels import LabelTrie, Prefix
from crowdselect.runtime.lm.load import gpu_share, load_model, load_tokenizer, pick_device
from crowdselect.runtime.lm.sampling import PLAIN_SAMPLING


def generate_tokens(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                    device: str, seed: int | None = None, model_defaults: bool = True,
                    **options: Any) -> list[list[int]]:
    """Batched, left-padded `model.generate`; the new tokens of each prompt, up to and including its first
    end-of-sequence token (what follows is padding).

    options: generation settings over the model's own generation config (`do_sample`, `temperature`, `top_p`,
    ...), or over transformers' plain defaults with only the model's bos/eos ids when `model_defaults` is False;
    seed: torch's seed before generating (None: left as it is). Greedy decoding gives each prompt the
    same tokens whatever else shares its batch, as long as the batch's width leaves room for max_new_tokens.
    """
    import torch
    from transformers import GenerationConfig

    own = model.generation_config
    cfg = copy.deepcopy(own) if model_defaults else GenerationConfig(bos_token_id=own.bos_token_id,
                                                                     eos_token_id=own.eos_token_id)
    cfg.update(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **options)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        ids, mask, _ = left_pad(prompts, tokenizer.pad_token_id, device)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    eos = eos_ids(model.generation_config, tokenizer)
    return [cut_at_eos(row, eos) for row in out[:, ids.shape[1]:].tolist()]


def cut_at_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """Tokens up to and including the first end-of-sequence token (the rest is padding).

    >>> cut_at_eos([5, 6, 2, 0, 0], {2})
    [5, 6, 2]
    >>> cut_at_eos([5, 6], {2})
    [5, 6]
    """
    for n, t in enumerate(tokens):
        if t in eos:
            return tokens[: n + 1]
    return tokens


def eos_ids(gen_config: Any, tokenizer: Any) -> set[int]:
    """Every end-of-sequence id: the generation config's (one or a list) and the tokenizer's."""
    eos = gen_config.eos_token_id if gen_config is not None else None
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class HFCausalLM:
    """A causal LM on transformers, on CUDA when the spec's actor has a GPU share (`load.pick_device`); left
    padding; position ids from the mask."""

    def __init__(self, spec: Any):
        import torch

        self.device = pick_device(gpu_share(spec))
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
        the vLLM backend; nothing from the model's generation_config but its bos/eos ids); returns the new text
        of each prompt."""
        sample = temperature > 0
        options = {"do_sample": sample, "temperature": temperature if sample else 1.0,
                   **(PLAIN_SAMPLING if sample else {"repetition_penalty": 1.0})}
        new = generate_tokens(self.model, self.tokenizer, prompts, max_new_tokens, self.device, seed,
                              model_defaults=False, **options)
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

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
