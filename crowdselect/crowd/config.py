"""Where a crowd table comes from and how its columns map: `InputConfig`, `WideLayout`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from crowdselect.core.config import ConfigError
from crowdselect.core.rejects import bad_rows_policy


@dataclass
class WideLayout:
    """Column mapping of a wide table: one response and one reward column per generator.

    `response` and `reward` are templates where `{name}` is the generator's name; `columns` overrides
    them per generator, e.g. `{"gemma-2-2b": {"response": "g2b_out", "reward": "g2b_rm"}}`.
    """

    id: str = "id"
    instruction: str = "instruction"
    response: str = "{name}_response"
    reward: str = "{name}_reward"
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)  # generators in the file deliberately left out of the crowd

    def response_column(self, name: str) -> str:
        return self.columns.get(name, {}).get("response", self.response.format(name=name))

    def reward_column(self, name: str) -> str:
        return self.columns.get(name, {}).get("reward", self.reward.format(name=name))


@dataclass
class InputConfig:
    path: list[str] = field(default_factory=list)  # files, directories, globs, s3:// gs:// URIs
    format: Literal["auto", "canonical", "long", "wide"] = "auto"
    on_bad_rows: Literal["fail", "quarantine", "skip"] = "fail"  # skip: deprecated name of quarantine
    wide: WideLayout = field(default_factory=WideLayout)
    lines_per_block: int = 4096  # rows per Ray Data block while reading; bounds reader memory

    def validate(self) -> None:
        self.on_bad_rows = bad_rows_policy(self.on_bad_rows)
        if self.lines_per_block < 1:
            raise ConfigError(f"lines_per_block: must be >= 1, got {self.lines_per_block}")
