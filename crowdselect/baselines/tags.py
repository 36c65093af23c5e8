"""Stage: InsTag-style intention tags of each instruction, produced by a generative judge.

The judge (HF transformers or vLLM, greedy) is asked for 1-5 short comma-separated tags; `parse_tags`
normalises its answer (also InsTag's JSON format `[{"tag": ..., "explanation": ...}]`). The tags feed the
Tags baseline's diversity-greedy selection (`crowdselect.baselines.tag_diversity.select_by_tags`).
Input: instruction. Output: tags (list[str]; empty when failed), tags_error (None, or why: generation
error, or an answer with no usable tag, quoted). The instruction keeps its head when it is too long.
"""

from __future__ import annotations

import json
import re
from typing import Any

from crowdselect.core import columns as C
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.prompts import TAGS_PREFIX, TAGS_PROMPT
from crowdselect.reward.rows import PairEncoder, check_columns, score_rows, text_cell
from crowdselect.runtime.lm.backend import load_causal_lm
from crowdselect.runtime.lm.batches import object_column
from crowdselect.runtime.lm.chat import encode_chat

MAX_TAGS = 5
_STRIP = " \t\"'`*#.:;-–•[](){}"


def _clean(tag: str) -> str:
    tag = re.sub(r"^\s*(\d+[.)]|[-*•])\s*", "", tag)  # list markers: "1.", "2)", "-", "*"
    return re.sub(r"\s+", " ", tag.strip(_STRIP)).lower()


def parse_tags(text: str, max_tags: int = MAX_TAGS) -> list[str]:
    """Tags from a judge's answer: comma/semicolon/newline separated, or InsTag JSON. Lower-cased,
    list markers and quotes stripped, at most 4 words and 40 characters each, de-duplicated in order.

    >>> parse_tags(" Math, arithmetic;  word problem\\n")
    ['math', 'arithmetic', 'word problem']
    >>> parse_tags('[{"tag": "Coding", "explanation": "x"}, {"tag": "python"}]')
    ['coding', 'python']
    >>> parse_tags("1. Poetry\\n2. Ocean imagery\\n2. ocean imagery")
    ['poetry', 'ocean imagery']
    """
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list):
        parts = [d["tag"] for d in data if isinstance(d, dict) and isinstance(d.get("tag"), str)]
    else:
        parts = re.split(r"[,;\n]", text)
    out: list[str] = []
    for part in parts:
        tag = _clean(part)
        if tag and len(tag) <= 40 and len(tag.split()) <= 4 and tag not in out:
            out.append(tag)
    return out[:max_tags]


class Tagger:
    """Ray Data stage (callable class) over per-instruction rows; `spec.model` is the tagging judge."""

    def __init__(self, spec: RewardSpec, output_column: str = C.TAGS, max_tags: int = MAX_TAGS):
        self.spec, self.output_column, self.max_tags = spec, output_column, max_tags
        self.template = spec.judge_prompt or TAGS_PROMPT
        self.lm = load_causal_lm(spec)
        self.encoder = PairEncoder(self.lm.tokenizer, self._render, spec.max_length, spec.truncation,
                                   spec.prompt_share, reserve=spec.max_new_tokens)

    def _render(self, instruction: str, _response: str = "") -> list[int]:
        messages = [{"role": "user", "content": self.template.format(instruction=instruction)}]
        if self.spec.system_prompt:
            messages.insert(0, {"role": "system", "content": self.spec.system_prompt})
        return encode_chat(self.lm.tokenizer, messages, add_generation_prompt=True, suffix=TAGS_PREFIX)

    def tag_prompts(self, prompts: list[list[int]]) -> list[str]:
        return self.lm.generate(prompts, self.spec.max_new_tokens, temperature=0.0)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = check_columns(type(self).__name__, batch, [C.INSTRUCTION])
        texts, errors = score_rows(
            n, lambda i: self.encoder.encode(text_cell(batch, C.INSTRUCTION, i), ""),
            lambda ids: len(ids) + self.spec.max_new_tokens, self.tag_prompts, self.spec.resources.batch_size,
            self.spec.tokens_per_forward, stage=self.spec.name)
        tags: list[list[str]] = [parse_tags(t, self.max_tags) if t is not None else [] for t in texts]
        for i, text in enumerate(texts):
            if text is not None and not tags[i]:
                errors[i] = f"no usable tag in the judge's answer {text[:80]!r}"
        out = dict(batch)
        out[self.output_column] = object_column(tags)
        out[C.error_column(self.output_column)] = object_column(errors)
        return out
