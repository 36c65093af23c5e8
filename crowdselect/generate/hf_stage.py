"""Generation with HF transformers, for machines without vLLM: batched, length-sorted, left-padded.

`HFGenerator` is a Ray Data stage class (model loaded once in `__init__`, `__call__(batch)` per batch),
wired by `build_hf_generate` into an actor pool of `spec.resources.replicas` actors. Within a batch, prompts are
sorted by length and cut into micro-batches of `spec.resources.batch_size` (`crowdselect.runtime.lm.batches`), so padding
stays small; an answer never depends on which rows share its micro-batch (see `_batch_lengths`).
Greedy decoding (temperature 0 or unset) gives the same answer whatever the batch; with sampling, the
generator is seeded per micro-batch (`seed` in sampling), which is reproducible for the same batches only.
A prompt longer than the model's length limit, or a micro-batch that fails, is recorded per row.
Prompts are rendered by `encode_chat` (a tokenizer without a chat template gets its plain layout); the
decoding loop is `crowdselect.runtime.lm.hf.generate_tokens`, the tree's one HF generation loop; weights load
as safetensors unless `allow_pickle_weights`. The model is resolved in the actor, so a `pkg:` alias is
converted into the cache of the node that runs it; the actor uses CUDA only with a GPU share.
"""

from __future__ import annotations

from typing import Any

from crowdselect.core import columns as C
from crowdselect.generate.common import chat_messages, check_input, columns_of, on_actor_pool, output_row
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.runtime.lm.batches import run_microbatches
from crowdselect.runtime.lm.chat import encode_chat
from crowdselect.runtime.lm.hf import generate_tokens
from crowdselect.runtime.lm.load import gpu_share, load_model, load_tokenizer, pick_device

HF_SAMPLING = {"temperature", "top_p", "top_k", "repetition_penalty", "min_p"}
BATCHES_PER_CALL = 2  # Ray batch = this many micro-batches, so length sorting has rows to sort


class HFGenerator:
    """Callable stage: rows {id, instruction, shard} -> rows {id, shard, response, error, tokens}."""

    def __init__(self, spec: GeneratorSpec):
        self.spec = spec
        self.device = pick_device(gpu_share(spec))
        self.tokenizer = load_tokenizer(spec)
        self.model = load_model(spec, self.device)
        self.max_len = spec.max_model_len or _model_max_len(self.model.config)

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
        lengths = self._batch_lengths([len(prompts[i]) for i in todo])
        results, errors = run_microbatches([prompts[i] for i in todo], lengths, self.spec.resources.batch_size,
                                           self.spec.resources.batch_size * self.max_len, self._generate,
                                           stage="generation failed")
        for i, res, err in zip(todo, results, errors, strict=True):
            out[i] = output_row(ids[i], texts[i], shards[i], **res) if err is None else \
                output_row(ids[i], texts[i], shards[i], error=err, prompt_tokens=len(prompts[i]))
        return columns_of(out)  # type: ignore[arg-type]

    def _batch_lengths(self, prompt_lengths: list[int]) -> list[int]:
        """Lengths for `run_microbatches`: prompt + max_tokens, so rows of a micro-batch are of similar length.
        A row too close to the length limit for the full `max_tokens` counts as longer than a whole batch's
        budget and goes alone, so the padded width never cuts an answer short: answers do not depend on
        which rows share a batch."""
        alone = self.spec.resources.batch_size * self.max_len + 1
        return [n + self.spec.max_tokens if n + self.spec.max_tokens <= self.max_len else alone
                for n in prompt_lengths]

    def _prompt_ids(self, instruction: str) -> list[int] | str:
        try:
            return encode_chat(self.tokenizer, chat_messages(instruction), add_generation_prompt=True)
        except Exception as e:  # a template that rejects the row
            return f"chat template failed: {type(e).__name__}: {e}"

    def _generate(self, prompts: list[list[int]]) -> list[dict[str, Any]]:
        width = max(len(p) for p in prompts)
        max_new = max(1, min(self.spec.max_tokens, self.max_len - width))
        seed = int(self.spec.sampling["seed"]) if "seed" in self.spec.sampling else None
        new = generate_tokens(self.model, self.tokenizer, prompts, max_new, self.device, seed,
                              **_generate_kwargs(self.spec.sampling))
        return [{"response": self.tokenizer.decode(toks, skip_special_tokens=True), "prompt_tokens": len(p),
                 "output_tokens": len(toks)} for p, toks in zip(prompts, new, strict=True)]


def _generate_kwargs(sampling: dict[str, Any]) -> dict[str, Any]:
    kw = {k: v for k, v in sampling.items() if k in HF_SAMPLING}
    if not kw.get("temperature"):
        kw.pop("temperature", None)
        return {"do_sample": False, **{k: v for k, v in kw.items() if k == "repetition_penalty"}}
    return {"do_sample": True, **kw}


def _model_max_len(config: Any) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None) or getattr(getattr(config, "text_config", None), key, None)
        if value:
            return int(value)
    return 2048


def build_hf_generate(spec: GeneratorSpec):
    """A function Dataset -> Dataset running `HFGenerator` in an actor pool of `spec.resources.replicas` actors
    (`spec` planned: its GPUs and batch size set); each actor resolves a `pkg:` model on its own node."""
    return on_actor_pool(HFGenerator, spec, {"spec": spec}, spec.resources.batch_size * BATCHES_PER_CALL)
