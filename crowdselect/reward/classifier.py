"""Stage: sequence-classification reward models (Skywork-Reward, ArmoRM style) over (instruction, response).

Input batch columns: instruction, response (plus anything else, passed through).
Output columns added: reward (float; NaN when the row failed), reward_error (None or why), reward_model.
The pair is rendered with the reward model's own chat template as a user turn and an assistant turn,
truncated by the spec's policy (RewardSpec), right-padded, and scored in length-sorted micro-batches. The
score is the model's `score` output when it has one (ArmoRM's preference score), else logits[:, 0].
The model reads its score at the rightmost token that is not its `config.pad_token_id` (transformers'
sequence-classification head: `GenericForSequenceClassification`), so the pad id must never end a sequence.
A tokenizer without its own pad token falls back to EOS (`load_tokenizer`), and for Llama-3.1 EOS is
`<|eot_id|>`, the token every rendered pair ends with: the score would be read one token early. So at load
(`distinct_pad`) a pad id that is missing, or that a rendered pair or EOS ends with, is replaced by an added
`<|reward_pad|>` token (the embeddings grow by one row when the id lies beyond them; padded positions are
masked, so its vector never reaches a score), and the model's `pad_token_id` is set to it.
This is `backend: hf`; `backend: vllm` scores the same token ids (`classifier_encoder`) through ray.data.llm
(`classifier_vllm.py`), where vLLM pools the true last token and padding plays no part.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crowdselect.core import columns as C
from crowdselect.core import log
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.rows import (
    PairEncoder,
    check_columns,
    float_column,
    score_rows,
    text_cell,
)
from crowdselect.runtime.lm.batches import object_column
from crowdselect.runtime.lm.chat import encode_chat
from crowdselect.runtime.lm.load import gpu_share, load_model, load_tokenizer, pick_device

REWARD_PAD = "<|reward_pad|>"


def end_ids(tokenizer: Any, config: Any, sample: list[int]) -> set[int]:
    """Ids a scored sequence may end with: the last token of a rendered pair, and every EOS id (tokenizer's
    and the model config's, one or a list)."""
    eos = getattr(config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    ids.add(tokenizer.eos_token_id)
    ids.add(sample[-1])
    return {i for i in ids if i is not None}


def distinct_pad(tokenizer: Any, model: Any, sample: list[int], name: str) -> int:
    """The pad id to right-pad with and set as the model's `pad_token_id`: the model's (else the tokenizer's),
    unless it is missing or a sequence ends with it (`end_ids`); then an added REWARD_PAD token."""
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
    ends = end_ids(tokenizer, model.config, sample)
    if pad is not None and pad not in ends:
        model.config.pad_token_id = pad
        return pad
    old = "no pad token" if pad is None else f"pad token {tokenizer.convert_ids_to_tokens(pad)!r} ends sequences"
    tokenizer.add_special_tokens({"pad_token": REWARD_PAD})
    pad = tokenizer.pad_token_id
    if pad >= model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(pad + 1, mean_resizing=False)
    model.config.pad_token_id = pad
    model.config.get_text_config().pad_token_id = pad
    log.say(f"reward {name}: {old}, so the score would be read one token early; padding with an added "
            f"{REWARD_PAD} (id {pad})")
    return pad


def classifier_encoder(tokenizer: Any, spec: RewardSpec) -> PairEncoder:
    """(instruction, response) -> the token ids a classifier scores: a user turn and an assistant turn in the
    tokenizer's chat template, truncated by the spec's policy. The HF and the vLLM backends both encode with it."""

    def render(instruction: str, response: str) -> list[int]:
        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        return encode_chat(tokenizer, messages, add_generation_prompt=False)

    return PairEncoder(tokenizer, render, spec.max_length, spec.truncation, spec.prompt_share)


class RewardClassifier:
    """Ray Data stage (callable class): heavy model load in __init__, `__call__(batch)` per batch."""

    def __init__(self, spec: RewardSpec, output_column: str = C.REWARD):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.spec, self.output_column = spec, output_column
        self.device = pick_device(gpu_share(spec))
        self.tokenizer = load_tokenizer(spec, padding_side="right")
        self.model = load_model(spec, self.device, auto_class=AutoModelForSequenceClassification)
        self.encoder = classifier_encoder(self.tokenizer, spec)
        self.pad = distinct_pad(self.tokenizer, self.model, self.encoder.render("Hi.", "Hello."), spec.name)
        self._torch = torch

    def encode(self, instruction: str, response: str) -> list[int]:
        """Token ids the model scores for one pair (template applied, truncated). Raises RowError."""
        return self.encoder.encode(instruction, response)

    def score_ids(self, seqs: list[list[int]]) -> np.ndarray:
        """Rewards of already-encoded sequences, one forward pass. Returns (n,) float64."""
        torch = self._torch
        width = max(len(s) for s in seqs)
        pad = self.pad
        if any(s[-1] == pad for s in seqs):  # the head would read the score before the last token
            raise ValueError(f"a sequence ends with the pad token {pad}; its score cannot be read")
        ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask)
        score = getattr(out, "score", None)
        values = score if score is not None else out.logits[:, 0]
        return values.reshape(len(seqs)).float().cpu().numpy().astype(np.float64)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = check_columns(type(self).__name__, batch, [C.INSTRUCTION, C.RESPONSE])
        results, errors = score_rows(
            n, lambda i: self.encode(text_cell(batch, C.INSTRUCTION, i), text_cell(batch, C.RESPONSE, i)), len,
            lambda seqs: list(self.score_ids(seqs)), self.spec.resources.batch_size, self.spec.tokens_per_forward,
            stage=self.spec.name)
        out = dict(batch)
        out[self.output_column] = float_column(results)
        out[C.error_column(self.output_column)] = object_column(errors)
        out[C.REWARD_MODEL] = object_column([self.spec.name] * n)
        return out
