"""Gallery indexes: SQLite metadata and vectors, a FAISS search structure, incremental builds."""

from landmarks.index.build import BuildReport, build_index
from landmarks.index.gallery_index import FingerprintMismatch, GalleryIndex, IndexInfo, Neighbour
from landmarks.index.vectors import INDEX_KINDS, VectorIndex

__all__ = [
    "INDEX_KINDS",
    "BuildReport",
    "FingerprintMismatch",
    "GalleryIndex",
    "IndexInfo",
    "Neighbour",
    "VectorIndex",
    "build_index",
]
