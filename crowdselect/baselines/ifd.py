"""Stage: IFD, the instruction-following difficulty of Cherry LLM (Li et al., 2024), from a student model.

    IFD = PPL(response | instruction) / PPL(response) = exp(NLL_conditioned - NLL_direct)

both perplexities over the same response tokens, computed by the student (a causal LM on HF transformers).
Conditioned: the student's chat template with the instruction as the user turn, then the response.
Direct: the same template with an empty user turn, then the response, so that the two differ only in the
instruction (Cherry's scripts feed the bare response; with chat students the template is kept on both sides).
High IFD = the instruction helps little to predict the response (a hard instruction); IFD >= 1 means the
instruction does not help at all, which Cherry treats as a misaligned pair.

Truncation: the instruction keeps its head (at most `prompt_share` of the budget), the response its head
(the same response tokens on both sides). Input columns: instruction and the response column (default
best_response). Output: ifd (float; NaN when failed), ifd_error. `tokens_per_forward` also bounds the
logits held per micro-batch (response tokens x vocab x 4 bytes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crowdselect.core import columns as C
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.rows import (
    RowError,
    check_columns,
    float_column,
    score_rows,
    text_cell,
)
from crowdselect.runtime.lm.batches import object_column
from crowdselect.runtime.lm.budget import head, split_budget
from crowdselect.runtime.lm.chat import encode_chat
from crowdselect.runtime.lm.hf import HFCausalLM


class IFDScorer:
    """Ray Data stage (callable class) over per-instruction rows; `spec.model` is the student."""

    def __init__(self, spec: RewardSpec, response_column: str = C.BEST_RESPONSE, output_column: str = C.IFD):
        self.spec, self.response_column, self.output_column = spec, response_column, output_column
        self.lm = HFCausalLM(spec)
        self.tok = self.lm.tokenizer
        self.direct_prompt = self._prompt("")

    def _prompt(self, instruction: str) -> list[int]:
        return encode_chat(self.tok, [{"role": "user", "content": instruction}], add_generation_prompt=True)

    def encode(self, instruction: str, response: str) -> tuple[list[int], list[int], list[int]]:
        """(conditioned prompt, direct prompt, response) token ids within max_length. Raises RowError."""
        resp = self.tok.encode(response, add_special_tokens=False)
        if not resp:
            raise RowError("empty response")
        instr = self.tok.encode(instruction, add_special_tokens=False)
        budget = self.spec.max_length - (len(self._prompt(instruction)) - len(instr))
        if budget <= 0:
            raise RowError(f"too long: the chat template alone exceeds max_length {self.spec.max_length}")
        keep_i, keep_r = split_budget(len(instr), len(resp), budget, self.spec.prompt_share)
        if keep_r == 0:
            raise RowError(f"too long: no room for the response within max_length {self.spec.max_length}")
        prompt = self._prompt(self.tok.decode(head(instr, keep_i))) if keep_i < len(instr) else self._prompt(instruction)
        return prompt, self.direct_prompt, head(resp, keep_r)

    def score(self, items: list[tuple[list[int], list[int], list[int]]]) -> list[float]:
        """IFD per encoded row: one forward over the conditioned and direct sequences together."""
        prompts = [c for c, _, _ in items] + [d for _, d, _ in items]
        responses = [r for _, _, r in items] * 2
        nll = self.lm.response_nll(prompts, responses)
        n = len(items)
        return np.exp(nll[:n] - nll[n:]).tolist()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = check_columns(type(self).__name__, batch, [C.INSTRUCTION, self.response_column])
        # both sequences of a row share a micro-batch: count the row's tokens twice
        results, errors = score_rows(
            n, lambda i: self.encode(text_cell(batch, C.INSTRUCTION, i), text_cell(batch, self.response_column, i)),
            lambda e: 2 * (len(e[0]) + len(e[2])), self.score, self.spec.resources.batch_size, self.spec.tokens_per_forward,
            stage=self.spec.name)
        out = dict(batch)
        out[self.output_column] = float_column(results)
        out[C.error_column(self.output_column)] = object_column(errors)
        return out
