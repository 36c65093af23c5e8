"""Stage: sequence-classification reward models (Skywork-Reward, ArmoRM style) over (instruction, response).

Input batch columns: instruction, response (plus anything else, passed through).
Output columns added: reward (float; NaN when the row failed), reward_error (None or why), reward_model.
The pair is rendered with the reward model's own chat template as a user turn and an assistant turn,
truncated by the spec's policy (RewardSpec), right-padded, and scored in length-sorted micro-batches. The
score is the model's `score` output when it has one (ArmoRM's preference score), else logits[:, 0].
The model reads its score at the last non-pad token (transformers' sequence-classification head).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crowdselect.core import columns as C
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


class RewardClassifier:
    """Ray Data stage (callable class): heavy model load in __init__, `__call__(batch)` per batch."""

    def __init__(self, spec: RewardSpec, output_column: str = C.REWARD):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.spec, self.output_column = spec, output_column
        self.device = pick_device(gpu_share(spec))
        self.tokenizer = load_tokenizer(spec)
        self.model = load_model(spec, self.device, auto_class=AutoModelForSequenceClassification)
        if self.model.config.pad_token_id is None:  # needed to find each row's last token in a padded batch
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.encoder = PairEncoder(self.tokenizer, self._render, spec.max_length, spec.truncation,
                                   spec.prompt_share)
        self._torch = torch

    def _render(self, instruction: str, response: str) -> list[int]:
        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        return encode_chat(self.tokenizer, messages, add_generation_prompt=False)

    def encode(self, instruction: str, response: str) -> list[int]:
        """Token ids the model scores for one pair (template applied, truncated). Raises RowError."""
        return self.encoder.encode(instruction, response)

    def score_ids(self, seqs: list[list[int]]) -> np.ndarray:
        """Rewards of already-encoded sequences, one forward pass. Returns (n,) float64."""
        torch = self._torch
        width = max(len(s) for s in seqs)
        pad = self.model.config.pad_token_id
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
