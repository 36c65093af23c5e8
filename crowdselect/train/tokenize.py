"""Chat-template tokenisation with loss on assistant tokens only; truncation, packing, batching.

`ChatTokenizer(model)(messages)` renders the conversation with the student's own chat template and
returns `input_ids` and `labels` of equal length, where every token that is not part of an assistant
turn has label -100 (ignored by the loss). Assistant turns are located by rendering prefixes of the
conversation: the text between `render(messages[:i], add_generation_prompt=True)` and
`render(messages[:i+1])` is turn i's answer, its end-of-turn marker included, so the model learns to stop.
Pieces are tokenised separately, exactly as inference sees them (prompt, then generated tokens).

`pack(examples, max_length)` concatenates rows into sequences of at most max_length tokens with
`position_ids` restarting at 0 per row; transformers then masks attention per row. `collate` pads a
micro-batch for the model. Pure apart from loading the tokenizer; no Ray, no DeepSpeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.core.rejects import BadRecord

IGNORE = -100


class ChatTokenizer:
    """Stage: messages -> {input_ids, labels}; heavy tokenizer load in __init__."""

    def __init__(self, model_path: str, max_length: int, chat_template: str | None = None,
                 revision: str | None = None, trust_remote_code: bool = False):
        from crowdselect.runtime.lm.load import ModelSource, load_tokenizer

        self.tokenizer = load_tokenizer(ModelSource(model_path, revision, trust_remote_code, chat_template))
        if not self.tokenizer.chat_template:
            raise UserError(f"model {model_path}: the tokenizer has no chat template; set model.chat_template")
        self.max_length = max_length
        self.pad_id = pad_token_id(self.tokenizer)

    def render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def assistant_spans(self, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """(full text, [(start, end)) character spans of assistant answers])."""
        full = self.render(messages, generation_prompt=False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], generation_prompt=True)
            upto = self.render(messages[: i + 1], generation_prompt=False)
            if not (upto.startswith(prompt) and full.startswith(upto)):
                raise UserError("the chat template does not render conversations prefix by prefix "
                                f"(turn {i + 1}); cannot find the assistant tokens. Set model.chat_template.")
            spans.append((len(prompt), len(upto)))
        return full, spans

    def __call__(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """-> {input_ids: list[int], labels: list[int], truncated: bool}; BadRecord if no answer token fits."""
        full, spans = self.assistant_spans(messages)
        ids: list[int] = []
        labels: list[int] = []
        cuts = sorted({0, len(full), *(e for s in spans for e in s)})
        trained = {s for s, _ in spans}
        for start, end in zip(cuts, cuts[1:], strict=False):
            piece = self.tokenizer(full[start:end], add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if start in trained else [IGNORE] * len(piece)
        truncated = len(ids) > self.max_length
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(x == IGNORE for x in labels):
            raise BadRecord(f"over-long: the prompt fills max_length {self.max_length}; "
                              "no assistant token is left after truncation")
        return {C.INPUT_IDS: ids, C.LABELS: labels, "truncated": truncated}


def pad_token_id(tokenizer) -> int:
    """The pad id, falling back to EOS (labels of padding are -100, so its value does not matter)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0


def pack(examples: Sequence[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Greedy in-order packing: rows are concatenated until the next one would exceed max_length.

    Each output row has input_ids, labels and position_ids (0.. per packed row), all of one length.
    A packed row's first token is a prompt token (label -100), so no loss crosses a row boundary.
    """
    out: list[dict[str, list[int]]] = []
    cur: dict[str, list[int]] = {C.INPUT_IDS: [], C.LABELS: [], C.POSITION_IDS: []}
    for ex in examples:
        n = len(ex[C.INPUT_IDS])
        if cur[C.INPUT_IDS] and len(cur[C.INPUT_IDS]) + n > max_length:
            out.append(cur)
            cur = {C.INPUT_IDS: [], C.LABELS: [], C.POSITION_IDS: []}
        cur[C.INPUT_IDS] += list(ex[C.INPUT_IDS])
        cur[C.LABELS] += list(ex[C.LABELS])
        cur[C.POSITION_IDS] += list(range(n))
    if cur[C.INPUT_IDS]:
        out.append(cur)
    return out


def pad_to_multiple(rows: list[dict], multiple: int) -> tuple[list[dict], int]:
    """Repeat rows from the start until len(rows) is a multiple (as torch's DistributedSampler does), so
    every worker gets the same number of micro-batches and every row is seen each epoch.
    Returns (rows, number of repeated rows)."""
    extra = (-len(rows)) % multiple
    if not rows:
        return rows, 0
    return rows + [rows[i % len(rows)] for i in range(extra)], extra


def collate(batch: dict[str, Sequence], pad_id: int) -> dict[str, Any]:
    """Columnar micro-batch (lists of token lists) -> padded torch tensors for a causal LM.

    input_ids, labels: (batch, max_len) long; attention_mask (batch, max_len) for unpacked rows;
    position_ids (batch, max_len) for packed rows (attention_mask left None so transformers masks per row).
    """
    import torch

    ids = [list(map(int, x)) for x in batch[C.INPUT_IDS]]
    width = max(len(x) for x in ids)
    out = {
        C.INPUT_IDS: torch.tensor([x + [pad_id] * (width - len(x)) for x in ids]),
        C.LABELS: torch.tensor([list(map(int, y)) + [IGNORE] * (width - len(y)) for y in batch[C.LABELS]]),
    }
    if C.POSITION_IDS in batch:
        # padding becomes its own segment (positions restart at 0), so real tokens never attend to it
        out[C.POSITION_IDS] = torch.tensor([list(map(int, p)) + list(range(width - len(p)))
                                            for p in batch[C.POSITION_IDS]])
    else:
        out["attention_mask"] = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    return out
