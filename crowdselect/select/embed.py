"""Instruction embeddings: a Ray Data stage class (model loaded once per actor, called per batch).

sentence-transformers models (a folder with modules.json) run through SentenceTransformer; any other HF
encoder through AutoModel with masked mean pooling. Output rows are L2-normalised float32 (n, d).
The device follows the actor's GPU share (`gpus`, `crowdselect.runtime.lm.load.pick_device`): CPU for 0, so
a 0-GPU actor never touches CUDA, CUDA when given GPUs. Remote code only when the config asks; weights
as safetensors only unless `allow_pickle_weights` (pickle files can run code when loaded), the rule of
`crowdselect.runtime.lm.load.check_weights`.
"""

from __future__ import annotations

import os

import numpy as np

from crowdselect.core import columns as C
from crowdselect.runtime.lm.load import pick_device
from crowdselect.runtime.models import resolve_model
from crowdselect.runtime.weights import check_weights


def _is_sentence_transformers(path: str) -> bool:
    return os.path.exists(os.path.join(path, "modules.json"))


class Embedder:
    """Callable stage: batch[instruction] (n,) -> batch[embedding] (n, d) float32, unit norm.

    Neither executor calls a stage on an empty block (`crowdselect.runtime.rows`); called directly on zero
    rows it still gives (0, d), the model's d, never a placeholder width.
    """

    def __init__(self, model: str, kind: str = "auto", batch_size: int = 64, max_length: int = 256,
                 gpus: float | None = 0.0, trust_remote_code: bool = False, allow_pickle_weights: bool = False):
        self.path = resolve_model(model)
        check_weights(self.path, allow_pickle_weights)
        safetensors_only = None if allow_pickle_weights else True  # a hub id without safetensors fails to load
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device = pick_device(gpus)
        use_st = kind == "sentence-transformers" or (kind == "auto" and _is_sentence_transformers(self.path))
        if use_st:
            from sentence_transformers import SentenceTransformer

            self.st = SentenceTransformer(self.path, device=device, trust_remote_code=trust_remote_code,
                                          model_kwargs={"use_safetensors": safetensors_only})
            self.st.max_seq_length = max_length
        else:
            from transformers import AutoModel, AutoTokenizer

            self.st = None
            self.tok = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
            self.model = AutoModel.from_pretrained(self.path, trust_remote_code=trust_remote_code,
                                                   use_safetensors=safetensors_only).to(device).eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n,) texts -> (n, d) float32 unit vectors; no texts -> (0, d), d the model's dimension."""
        if not texts:  # the width of a real output: model APIs name (or know) the dimension differently
            return np.zeros((0, self.embed(["x"]).shape[1]), np.float32)
        if self.st is not None:
            out = self.st.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
            return out.astype(np.float32)
        return np.concatenate([self._hf_batch(texts[i:i + self.batch_size])
                               for i in range(0, len(texts), self.batch_size)])

    def _hf_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state  # (b, t, h)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu().numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[C.INSTRUCTION]]
        batch[C.EMBEDDING] = self.embed(texts)
        return batch


def embedder_kwargs(e, gpus: float | None = None) -> dict:
    """An EmbedderConfig as `Embedder`'s arguments (gpus: the stage's GPU share, unless given; 0 is CPU)."""
    res = e.resources
    return {"model": e.model, "kind": e.kind, "batch_size": res.batch_size, "max_length": e.max_length,
            "gpus": res.num_gpus if gpus is None else gpus, "trust_remote_code": e.trust_remote_code,
            "allow_pickle_weights": e.allow_pickle_weights}


def embed_texts(texts: list[str], e) -> np.ndarray:
    """(m,) texts -> (m, d) on this process's CPU with the stage's model and settings (for a few texts: the
    eval questions decontamination compares the pool with)."""
    return Embedder(**embedder_kwargs(e, gpus=0.0)).embed(texts)
