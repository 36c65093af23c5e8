"""Where a crowd table comes from and how its columns map: `InputConfig`, `WideLayout`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from crowdselect.core.config import ConfigError
from crowdselect.core.records import JSON_SUFFIXES
from crowdselect.core.rejects import bad_rows_policy

CROWD_SUFFIXES = (*JSON_SUFFIXES, ".parquet")  # the files a crowd table is read from

DEFAULT_RESPONSE = "{name}_response"
DEFAULT_REWARD = "{name}_reward"

ColumnPath = tuple[str, ...]  # a column, then the field names down into its structs: ("Qwen2.5-3B-Instruct", "content")


@dataclass
class WideLayout:
    """Column mapping of a wide table: one response and one reward per generator.

    `response` and `reward` are templates where `{name}` is the generator's name; `columns` overrides
    them per generator, e.g. `{"gemma-2-2b": {"response": "g2b_out", "reward": "g2b_rm"}}`. A dotted
    template (`{name}.content`, `{name}.Skywork-Reward-Llama-3.1-8B`) reaches into a struct column; since
    names hold dots themselves it is split against a file's schema (`crowd/wide.py: resolve_wide`), which
    returns a copy of the layout with the resolved paths. Unresolved, every name is one flat column.
    """

    id: str = "id"
    instruction: str = "instruction"
    response: str = DEFAULT_RESPONSE
    reward: str = DEFAULT_REWARD
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)  # generators in the file deliberately left out of the crowd

    def __post_init__(self) -> None:
        # generator -> (response path, reward path), from `resolve_wide`; an attribute, not a config key
        self._paths: dict[str, tuple[ColumnPath, ColumnPath]] = {}

    def response_column(self, name: str) -> str:
        return self.columns.get(name, {}).get("response", self.response.format(name=name))

    def reward_column(self, name: str) -> str:
        return self.columns.get(name, {}).get("reward", self.reward.format(name=name))

    def chose(self, name: str, what: Literal["response", "reward"]) -> bool:
        """Whether the config names `what` for generator `name` (else the default template applies)."""
        default = DEFAULT_RESPONSE if what == "response" else DEFAULT_REWARD
        return what in self.columns.get(name, {}) or getattr(self, what) != default

    def response_path(self, name: str) -> ColumnPath:
        return self._paths[name][0] if name in self._paths else (self.response_column(name),)

    def reward_path(self, name: str) -> ColumnPath:
        return self._paths[name][1] if name in self._paths else (self.reward_column(name),)

    def with_paths(self, paths: dict[str, tuple[ColumnPath, ColumnPath]]) -> WideLayout:
        """A copy whose generators read from these (resolved) paths."""
        out = replace(self)
        out._paths = dict(paths)
        return out

    @property
    def paths(self) -> dict[str, tuple[ColumnPath, ColumnPath]]:
        return dict(self._paths)


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
