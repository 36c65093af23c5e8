"""The README's file tree stays true: every tracked file is listed, and every listed file exists."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_file_tree_names_every_file():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = {f for f in tracked.stdout.splitlines() if f}
    text = (ROOT / "README.md").read_text()
    block = text.split("## File tree", 1)[1].split("```", 2)[1]
    listed = {line.split()[0] for line in block.splitlines() if line.strip()}
    assert files - listed == set(), "files missing from the README's file tree"
    assert {p for p in listed if not (ROOT / p).exists()} == set(), "README lists files that do not exist"
