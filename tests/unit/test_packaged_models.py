"""Joining and verifying a split GGUF model (crowdselect.runtime.models) on a tiny fake part set."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from crowdselect.runtime import models
from crowdselect.runtime.models import PackagedModelError, SplitGGUF, join_parts


def tiny_gguf(path: Path, arch: str = "qwen2", name: str = "Tiny Test Model") -> bytes:
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_tensor("t", np.arange(4096, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def part_set(tmp_path: Path, data: bytes, parts: int = 3) -> list[Path]:
    """Package folders <tmp>/pkgN/data/partNN.bin holding `data` cut into `parts` pieces."""
    step = -(-len(data) // parts)
    dirs = []
    for i in range(1, parts + 1):
        d = tmp_path / f"pkg{i}"
        (d / "data").mkdir(parents=True)
        (d / "data" / f"part{i:02d}.bin").write_bytes(data[(i - 1) * step: i * step])
        dirs.append(d)
    return dirs


@pytest.fixture
def fake(tmp_path):
    data = tiny_gguf(tmp_path / "whole.gguf")
    spec = SplitGGUF(module_prefix="pkg", parts=3, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                     architecture="qwen2", header_name="Tiny Test Model", filename="tiny.gguf")
    return spec, data, part_set(tmp_path, data)


def test_join_verifies_and_reproduces_the_file(fake, tmp_path):
    spec, data, dirs = fake
    out = join_parts(spec, dirs, tmp_path / "cache" / "tiny.gguf")
    assert out.read_bytes() == data
    assert models.gguf_header(out) == ("qwen2", "Tiny Test Model")


def test_corrupted_part_names_the_file_and_the_digest(fake, tmp_path):
    spec, _, dirs = fake
    part = dirs[1] / "data" / "part02.bin"
    raw = bytearray(part.read_bytes())
    raw[10] ^= 0xFF  # same size, one flipped byte
    part.write_bytes(bytes(raw))
    target = tmp_path / "cache" / "tiny.gguf"
    with pytest.raises(PackagedModelError, match=r"tiny.gguf \(joined from pkg1..3\): sha256 [0-9a-f]{64}, "
                                                 r"expected " + spec.sha256 + "; a part is corrupted"):
        join_parts(spec, dirs, target)
    assert not target.exists() and not target.with_name("tiny.gguf.part").exists()  # nothing left to trust


def test_truncated_part_is_a_size_mismatch(fake, tmp_path):
    spec, _, dirs = fake
    part = dirs[2] / "data" / "part03.bin"
    part.write_bytes(part.read_bytes()[:-7])
    with pytest.raises(PackagedModelError, match=rf"size {spec.size - 7} bytes, expected {spec.size}"):
        join_parts(spec, dirs, tmp_path / "tiny.gguf")


def test_missing_part_and_wrong_count(fake, tmp_path):
    spec, _, dirs = fake
    (dirs[0] / "data" / "part01.bin").unlink()
    with pytest.raises(PackagedModelError, match="part 1 missing"):
        join_parts(spec, dirs, tmp_path / "tiny.gguf")
    with pytest.raises(PackagedModelError, match="expected 3 parts, got 2"):
        join_parts(spec, dirs[:2], tmp_path / "tiny.gguf")


def test_header_mismatch_is_reported_even_when_the_digest_matches(fake, tmp_path):
    spec, _, dirs = fake
    wrong = replace(spec, header_name="Qwen2.5 Coder 1.5B Instruct GGUF")
    with pytest.raises(PackagedModelError, match=r"GGUF header says architecture='qwen2' name='Tiny Test Model', "
                                                 r"expected 'qwen2' / 'Qwen2.5 Coder 1.5B Instruct GGUF'"):
        join_parts(wrong, dirs, tmp_path / "tiny.gguf")


def test_not_a_gguf_file(tmp_path):
    junk = b"not a gguf file at all" * 10
    spec = SplitGGUF(module_prefix="pkg", parts=1, size=len(junk), sha256=hashlib.sha256(junk).hexdigest(),
                     architecture="qwen2", header_name="x", filename="junk.gguf")
    with pytest.raises(PackagedModelError, match="not a readable GGUF file"):
        join_parts(spec, part_set(tmp_path, junk, parts=1), tmp_path / "junk.gguf")


def test_packaged_qwen_specs_are_pinned():
    """The digests kept in the repo are full sha256 values of the published part sets."""
    for spec, parts in ((models.QWEN_05B, 6), (models.QWEN_15B, 22)):
        assert spec.parts == parts and len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    assert models.QWEN_05B.sha256.startswith("1d961463") and models.QWEN_05B.sha256.endswith("4ff32")
    assert models.QWEN_15B.sha256.startswith("cc324af0") and models.QWEN_15B.sha256.endswith("3bb046")
