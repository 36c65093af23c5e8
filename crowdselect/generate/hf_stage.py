"""Generation with HF transformers, for machines without vLLM: batched, length-sorted, left-padded.

`HFGenerator` is a Ray Data stage class (model loaded once in `__init__`, `__call__(batch)` per batch),
wired by `build_hf_generate` into an actor pool of `spec.replicas` actors. Within a batch, prompts are
sorted by length and cut into micro-batches of `spec.batch_size`, so padding stays small; an answer never
depends on which rows share its micro-batch (see `_micro_batches`).
Greedy decoding (temperature 0 or unset) gives the same answer whatever the batch; with sampling, the
generator is seeded per micro-batch (`seed` in sampling), which is reproducible for the same batches only.
A prompt longer than the model's length limit, or a micro-batch that fails, is recorded per row.
"""

from __future__ import annotations

from typing import Any

from crowdselect.core import columns as C
from crowdselect.generate.common import chat_messages, check_input, columns_of, output_row
from crowdselect.generate.spec import GeneratorSpec

HF_SAMPLING = {"temperature", "top_p", "top_k", "repetition_penalty", "min_p"}
BATCHES_PER_CALL = 2  # Ray batch = this many micro-batches, so length sorting has rows to sort


class HFGenerator:
    """Callable stage: rows {id, instruction, shard} -> rows {id, shard, response, error, tokens}."""

    def __init__(self, model_path: str, spec: GeneratorSpec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        self.device = "cuda" if spec.gpus_per_replica > 0 and torch.cuda.is_available() else "cpu"
        kw = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, **kw)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_dtype(spec.dtype, self.device), **kw)
        self.model.to(self.device).eval()
        self.max_len = spec.max_model_len or _model_max_len(self.model.config)
        self.torch = torch

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        check_input(batch, "HFGenerator")
        ids, shards = [str(x) for x in batch[C.ID]], [str(x) for x in batch[C.SHARD]]
        texts = [str(t) for t in batch[C.INSTRUCTION]]
        prompts = [self._prompt_ids(t) for t in texts]
        out: list[dict[str, Any] | None] = [None] * len(ids)
        todo = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):  # the chat template failed for this row
                out[i] = output_row(ids[i], texts[i], shards[i], error=p)
            elif len(p) >= self.max_len:
                out[i] = output_row(ids[i], texts[i], shards[i], prompt_tokens=len(p), error=(
                    f"prompt too long: {len(p)} tokens, the model's limit is {self.max_len}"))
            else:
                todo.append(i)
        for rows in self._micro_batches(todo, [len(p) for p in prompts]):
            for i, res in zip(rows, self._generate_rows([prompts[i] for i in rows]), strict=True):
                out[i] = output_row(ids[i], texts[i], shards[i], **res)
        return columns_of(out)  # type: ignore[arg-type]

    def _micro_batches(self, rows: list[int], lengths: list[int]) -> list[list[int]]:
        """Length-sorted groups of `batch_size`. A row too close to the length limit for the full
        `max_tokens` goes alone, so the padded width never cuts an answer short: answers do not depend
        on which rows share a batch."""
        roomy = sorted((i for i in rows if lengths[i] + self.spec.max_tokens <= self.max_len), key=lambda i: lengths[i])
        tight = [[i] for i in rows if lengths[i] + self.spec.max_tokens > self.max_len]
        size = self.spec.batch_size
        return [roomy[k:k + size] for k in range(0, len(roomy), size)] + tight

    def _prompt_ids(self, instruction: str) -> list[int] | str:
        try:
            text = self.tokenizer.apply_chat_template(chat_messages(instruction), tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as e:  # a template that rejects the row (e.g. a missing chat template)
            return f"chat template failed: {type(e).__name__}: {e}"
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate_rows(self, prompts: list[list[int]]) -> list[dict[str, Any]]:
        """Generate a micro-batch; if it fails, each row alone, so one bad row fails only itself."""
        try:
            return self._generate(prompts)
        except Exception as e:
            if len(prompts) == 1:
                return [{"error": f"generation failed: {type(e).__name__}: {e}", "prompt_tokens": len(prompts[0])}]
            return [r for p in prompts for r in self._generate_rows([p])]

    def _generate(self, prompts: list[list[int]]) -> list[dict[str, Any]]:
        torch = self.torch
        enc = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        max_new = max(1, min(self.spec.max_tokens, self.max_len - width))
        kwargs = _generate_kwargs(self.spec.sampling)
        if "seed" in self.spec.sampling:
            torch.manual_seed(int(self.spec.sampling["seed"]))
        with torch.inference_mode():
            seqs = self.model.generate(**enc, max_new_tokens=max_new, pad_token_id=self.tokenizer.pad_token_id,
                                       **kwargs)
        new = seqs[:, width:].tolist()
        eos = _eos_ids(self.model.generation_config, self.tokenizer)
        results = []
        for p, toks in zip(prompts, new, strict=True):
            toks = _cut_at_eos(toks, eos)
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            results.append({"response": text, "prompt_tokens": len(p), "output_tokens": len(toks)})
        return results


def _generate_kwargs(sampling: dict[str, Any]) -> dict[str, Any]:
    kw = {k: v for k, v in sampling.items() if k in HF_SAMPLING}
    if not kw.get("temperature"):
        kw.pop("temperature", None)
        return {"do_sample": False, **{k: v for k, v in kw.items() if k == "repetition_penalty"}}
    return {"do_sample": True, **kw}


def _cut_at_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """Tokens up to and including the first end-of-sequence token (the rest is padding)."""
    for n, t in enumerate(tokens):
        if t in eos:
            return tokens[: n + 1]
    return tokens


def _eos_ids(gen_config: Any, tokenizer: Any) -> set[int]:
    eos = gen_config.eos_token_id if gen_config is not None else None
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":  # fp32 on CPU (bf16 matmuls are slow without AMX), bf16 on GPU
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, name)


def _model_max_len(config: Any) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None) or getattr(getattr(config, "text_config", None), key, None)
        if value:
            return int(value)
    return 2048


def build_hf_generate(spec: GeneratorSpec, model_path: str):
    """A function Dataset -> Dataset running `HFGenerator` in an actor pool of `spec.replicas` actors."""

    def apply(ds):
        import ray

        from crowdselect.runtime.resources import for_generator

        return ds.map_batches(
            HFGenerator,
            fn_constructor_kwargs={"model_path": model_path, "spec": spec},
            batch_size=spec.batch_size * BATCHES_PER_CALL,
            compute=ray.data.ActorPoolStrategy(size=spec.replicas),
            batch_format="numpy",
            **for_generator(spec).remote_options(),
        )

    return apply
