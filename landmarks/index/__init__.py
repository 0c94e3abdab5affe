"""Gallery indexes: SQLite metadata and vectors, a FAISS or Milvus search structure, incremental builds."""

from landmarks.index.build import BuildReport, build_index
from landmarks.index.gallery_index import BACKENDS, FingerprintMismatch, GalleryIndex, IndexInfo, Neighbour
from landmarks.index.milvus import MilvusVectorIndex, VectorStore
from landmarks.index.vectors import INDEX_KINDS, VectorIndex

__all__ = [
    "BACKENDS",
    "INDEX_KINDS",
    "BuildReport",
    "FingerprintMismatch",
    "GalleryIndex",
    "IndexInfo",
    "MilvusVectorIndex",
    "Neighbour",
    "VectorIndex",
    "VectorStore",
    "build_index",
]
