"""Gallery indexes: SQLite metadata and vectors, a FAISS or Milvus search structure, incremental builds."""

from landmarks.index.gallery_index import (
    BACKENDS,
    FingerprintMismatch,
    GalleryIndex,
    IndexInfo,
    Neighbour,
    recorded_model,
)
from landmarks.index.milvus import MilvusVectorIndex, VectorStore
from landmarks.index.vectors import INDEX_KINDS, FaissIndex, vector_index

__all__ = [
    "BACKENDS",
    "INDEX_KINDS",
    "BuildReport",
    "FaissIndex",
    "FingerprintMismatch",
    "GalleryIndex",
    "IndexInfo",
    "MilvusVectorIndex",
    "Neighbour",
    "vector_index",
    "VectorStore",
    "build_index",
    "recorded_model",
]


def __getattr__(name: str):
    # Building needs the model (torch, timm): imported only when asked for, so commands that only
    # read or move an index start fast.
    if name in ("BuildReport", "build_index"):
        from landmarks.index import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
