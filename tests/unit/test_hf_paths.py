"""hf:// paths without a network: their form, and the one-line error of a Hub that cannot be reached.

The tests run with HF_HUB_OFFLINE=1 (tests/conftest.py), so the real HfFileSystem refuses at once, as it
does on a machine with no network; reading through the Hub's filesystem is in tests/stage/test_hf_read.py.
"""

import time

import pytest

from crowdselect.core import storage
from crowdselect.core.errors import UserError
from crowdselect.core.paths import check_inputs, check_out_dir
from crowdselect.core.records import list_data_files
from crowdselect.pool.read import read_pool

ZOO = "hf://datasets/Magpie-Align/Magpie-100K-Generator-Zoo"


@pytest.mark.parametrize("uri, parts", [
    (f"{ZOO}/data/train-00000-of-00010.parquet",
     ("Magpie-Align/Magpie-100K-Generator-Zoo", None, "data/train-00000-of-00010.parquet")),
    ("hf://datasets/org/name@v1.0/data/*.jsonl", ("org/name", "v1.0", "data/*.jsonl")),
    ("hf://datasets/org/name@refs%2Fconvert%2Fparquet", ("org/name", "refs%2Fconvert%2Fparquet", "")),
    ("hf://datasets/org/name/", ("org/name", None, "")),
])
def test_hf_uris_parse_into_repository_revision_and_path(uri, parts):
    got = storage.parse_hf_uri(uri)
    assert (got.repo_id, got.revision, got.path) == parts
    assert storage.is_remote(uri) and storage.scheme(uri) == "hf"


@pytest.mark.parametrize("uri", ["hf://models/org/name/x.json", "hf://datasets/org", "hf://org/name/x.jsonl",
                                 "hf://datasets/org/name@/x.jsonl", "hf://datasets//name"])
def test_a_malformed_hf_uri_names_the_expected_form(uri):
    with pytest.raises(UserError, match=r"^--input hf://.*hf://datasets/ORG/NAME\[@REV\]/PATH"):
        check_inputs([uri])


def test_an_unreachable_hub_is_one_line_naming_the_path_and_fails_at_once():
    started = time.perf_counter()
    for call, shown in ((lambda: check_inputs([f"{ZOO}/data/*.parquet"]), f"--input {ZOO}/data/*.parquet"),
                        (lambda: list_data_files([f"{ZOO}/data"]), f"{ZOO}/data"),
                        (lambda: read_pool([f"{ZOO}@main/data/x.jsonl"]), f"{ZOO}@main/data/x.jsonl")):
        with pytest.raises(UserError) as e:
            call()
        msg = str(e.value)
        assert msg.startswith(f"{shown}: cannot reach the Hugging Face Hub (offline?): ") and "\n" not in msg
    assert time.perf_counter() - started < 10


def test_hf_is_not_an_output():
    with pytest.raises(UserError, match=r"--out hf://datasets/org/name/out: hf:// paths are read-only inputs"):
        check_out_dir("hf://datasets/org/name/out")
