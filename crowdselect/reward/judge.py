"""Stage: LLM-as-judge reward, a probability-weighted rating read from a generative model's next token.

Per row the judge sees its prompt template filled with the row (`{instruction}`, `{response}` and any other
`{column}` of the batch), rendered with the judge's chat template, and an assistant answer forced to start
with the answer prefix (`Rating: [[`). The score is the expected rating under the judge's next-token
distribution over the labels low..high, renormalised over the labels (`crowdselect.reward.scoring`, which
also handles labels of several tokens, like "10" in SmolLM2's tokenizer). Backends: HF transformers (full
softmax) or vLLM (top-20 logprobs). No text is generated.

Input columns: instruction, response (names configurable). Output columns added: the score column
(default `reward`), its error column (`reward_error`: None or why; the row is kept with a NaN score),
`reward_model` (unless model_column is None) and optionally the label mass (probability on valid labels).
"""

from __future__ import annotations

import functools
import string
from typing import Any

import numpy as np

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.prompts import REWARD_PREFIX, REWARD_PROMPT
from crowdselect.reward.rows import (
    PairEncoder,
    RowError,
    check_columns,
    float_column,
    score_rows,
    text_cell,
)
from crowdselect.reward.scoring import expected_score, label_probs
from crowdselect.runtime.lm.backend import load_causal_lm
from crowdselect.runtime.lm.batches import object_column
from crowdselect.runtime.lm.chat import encode_chat
from crowdselect.runtime.lm.labels import LabelTrie


def template_fields(template: str) -> list[str]:
    """Named fields of a str.format template, in order of first use. ValueError for a malformed template or
    a positional field ("{}", "{0}"); literal braces are written "{{" and "}}"."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    bad = [f for f in names if not f.isidentifier()]
    if bad:
        raise ValueError(f"field {{{bad[0]}}} is not a name (write literal braces as {{{{ and }}}})")
    return list(dict.fromkeys(names))


def build_label_trie(tokenizer: Any, answer_prefix: str, values: range) -> LabelTrie:
    """Token sequences of each rating as the judge would write it right after the answer prefix.

    Raises ConfigError when the tokenizer merges the prefix with a rating (the prefix must end on a token
    boundary), so that the first rating token is the next token after the prompt.
    """
    messages = [{"role": "user", "content": "Rate this."}]
    base = encode_chat(tokenizer, messages, add_generation_prompt=True, suffix=answer_prefix)
    labels = []
    for v in values:
        ids = encode_chat(tokenizer, messages, add_generation_prompt=True, suffix=answer_prefix + str(v))
        if ids[: len(base)] != base:
            raise ConfigError(f"judge: answer prefix {answer_prefix!r} merges with the rating {v} in this "
                              "tokenizer; choose a prefix that ends on a token boundary, e.g. one ending in '[['")
        labels.append(tuple(ids[len(base):]))
    return LabelTrie(values=tuple(values), labels=tuple(labels))


class JudgeScorer:
    """Ray Data stage (callable class): heavy model load in __init__, `__call__(batch)` per batch.

    The prompt template is fixed (`prompt`, else spec.judge_prompt, else REWARD_PROMPT) or, with
    `prompt_column` (and `system_column`), read per row, for evaluations that mix judge prompts.
    """

    def __init__(self, spec: RewardSpec, *, low: int = 1, high: int = 10, prompt: str | None = None,
                 answer_prefix: str = REWARD_PREFIX, system_prompt: str | None = None,
                 output_column: str = C.REWARD, instruction_column: str = C.INSTRUCTION,
                 response_column: str = C.RESPONSE, model_column: str | None = C.REWARD_MODEL,
                 mass_column: str | None = None, prompt_column: str | None = None,
                 system_column: str | None = None):
        if low >= high:
            raise ConfigError(f"judge {spec.name!r}: rating scale needs low < high, got {low}..{high}")
        self.spec = spec
        self.template = prompt or spec.judge_prompt or REWARD_PROMPT
        self.system_prompt = system_prompt if system_prompt is not None else spec.system_prompt
        self.answer_prefix = answer_prefix
        self.columns = (instruction_column, response_column)
        self.prompt_column, self.system_column = prompt_column, system_column
        self.output_column, self.model_column, self.mass_column = output_column, model_column, mass_column
        self.lm = load_causal_lm(spec)
        self.trie = build_label_trie(self.lm.tokenizer, answer_prefix, range(low, high + 1))
        self._encoders: dict[tuple[str, str | None], tuple[PairEncoder, list[str]]] = {}
        if prompt_column is None:
            try:
                self._encoder(self.template, self.system_prompt)
            except RowError as e:
                raise ConfigError(f"judge {spec.name!r}: {e}") from None

    def _encoder(self, template: str, system: str | None) -> tuple[PairEncoder, list[str]]:
        """The truncating encoder of one (template, system prompt) and the template's extra fields."""
        key = (template, system)
        if key not in self._encoders:
            try:
                fields = template_fields(template)
            except ValueError as e:
                raise RowError(f"prompt template: {e}") from None
            for need in ("instruction", "response"):
                if need not in fields:
                    raise RowError(f"prompt template lacks {{{need}}}")
            render = functools.partial(self._render, template, system)
            encoder = PairEncoder(self.lm.tokenizer, render, self.spec.max_length, self.spec.truncation,
                                  self.spec.prompt_share, reserve=self.trie.max_depth - 1)
            self._encoders[key] = (encoder, [f for f in fields if f not in ("instruction", "response")])
        return self._encoders[key]

    @property
    def encoder(self) -> PairEncoder:
        """The truncating encoder of the fixed prompt template (not of per-row templates)."""
        return self._encoder(self.template, self.system_prompt)[0]

    def _render(self, template: str, system: str | None, instruction: str, response: str,
                **extras: str) -> list[int]:
        messages = [{"role": "user", "content": template.format(instruction=instruction, response=response,
                                                                **extras)}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return encode_chat(self.lm.tokenizer, messages, add_generation_prompt=True, suffix=self.answer_prefix)

    def score_prompts(self, prompts: list[list[int]]) -> list[tuple[float, float]]:
        """(score, mass) per encoded prompt; a prompt whose mass on the labels is 0 raises."""
        score, mass = expected_score(self.trie, label_probs(self.trie, self.lm.step_probs(prompts, self.trie)))
        if np.any(~np.isfinite(score)):
            raise RowError("the judge put no probability on any rating label")
        return list(zip(score.tolist(), mass.tolist(), strict=True))

    def _encode_row(self, batch: dict[str, Any], i: int) -> list[int]:
        if self.prompt_column is None:
            template, system = self.template, self.system_prompt
        else:
            template = text_cell(batch, self.prompt_column, i)
            system = text_cell(batch, self.system_column, i) if self.system_column else self.system_prompt
        encoder, extra_fields = self._encoder(template, system or None)
        missing = [f for f in extra_fields if f not in batch]
        if missing:
            raise RowError(f"prompt template field {{{missing[0]}}} is not a column of the batch")
        extras = {f: text_cell(batch, f, i) for f in extra_fields}
        instruction, response = (text_cell(batch, c, i) for c in self.columns)
        return encoder.encode(instruction, response, **extras)

    def _needed_columns(self) -> list[str]:
        if self.prompt_column is None:
            return [*self.columns, *self._encoder(self.template, self.system_prompt)[1]]
        return [*self.columns, self.prompt_column, *([self.system_column] if self.system_column else [])]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = check_columns(type(self).__name__, batch, self._needed_columns())
        results, errors = score_rows(n, lambda i: self._encode_row(batch, i), len, self.score_prompts,
                                     self.spec.resources.batch_size, self.spec.tokens_per_forward, stage=self.spec.name)
        out = dict(batch)
        out[self.output_column] = float_column([None if r is None else r[0] for r in results])
        out[C.error_column(self.output_column)] = object_column(errors)
        if self.model_column:
            out[self.model_column] = object_column([self.spec.name] * n)
        if self.mass_column:
            out[self.mass_column] = float_column([None if r is None else r[1] for r in results])
        return out
