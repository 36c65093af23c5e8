"""The weights rule of every model load: safetensors only, unless a config says `allow_pickle_weights: true`.

Pickle files (`pytorch_model.bin`, `.pt`, ...) can run code when loaded. `check_weights` refuses a local
folder (and a sentence-transformers folder's module folders) that holds only pickle weights; transformers
loads get `use_safetensors=True` for hub ids; vLLM gets `load_format=safetensors`, and `check_load_format`
keeps an `engine_kwargs.load_format` override from undoing that. Used by the model loader
(`crowdselect.runtime.lm.load`), the embedder and the config checks. No torch, no transformers here.
"""

from __future__ import annotations

import json
import os
from typing import Any

from crowdselect.core.config import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# vLLM load formats that read no pickle file; others ("auto" falls back to .bin, "pt", "npcache") need
# allow_pickle_weights
SAFE_LOAD_FORMATS = ("safetensors", "fastsafetensors", "runai_streamer", "gguf", "dummy")


def check_weights(path: str, allow_pickle: bool) -> None:
    """Refuse a local model folder whose only weights are pickle files, unless `allow_pickle`.

    A sentence-transformers folder's module folders (modules.json `path`, e.g. 2_Dense) are checked too.
    A hub id is checked by transformers itself (`use_safetensors=True` makes it fail without safetensors).
    """
    if allow_pickle or not os.path.isdir(path):
        return
    for folder in _weight_folders(path):
        names = os.listdir(folder) if os.path.isdir(folder) else []
        if any(n.endswith(".safetensors") for n in names):
            continue
        pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ConfigError(
                f"model {folder}: holds only pickle weights ({', '.join(pickles[:3])}), which can run code when "
                "loaded; convert them to safetensors, or set allow_pickle_weights: true for a source you trust")


def _weight_folders(path: str) -> list[str]:
    """`path` and, for a sentence-transformers folder, each module folder its modules.json names."""
    folders = [path]
    try:
        with open(os.path.join(path, "modules.json")) as f:
            modules = json.load(f)
    except (OSError, ValueError):
        return folders
    for m in modules if isinstance(modules, list) else []:
        sub = m.get("path") if isinstance(m, dict) else None
        if isinstance(sub, str) and sub:
            folders.append(os.path.join(path, sub))
    return folders


def check_load_format(engine_kwargs: dict[str, Any], allow_pickle: bool) -> None:
    """A vLLM `engine_kwargs.load_format` that may read pickle weights is refused unless `allow_pickle`
    (the engine is otherwise given load_format=safetensors; an override must not undo the rule)."""
    fmt = engine_kwargs.get("load_format")
    if fmt is not None and not allow_pickle and fmt not in SAFE_LOAD_FORMATS:
        raise ConfigError(f"engine_kwargs.load_format: {fmt!r} may load pickle weights, which can run code; use "
                          f"one of {', '.join(SAFE_LOAD_FORMATS)}, or set allow_pickle_weights: true for a "
                          "source you trust")
