"""The vector-store interface of an index, and its Milvus backend.

`VectorStore` is what `GalleryIndex` needs from its vectors; FAISS's `vector_index` (in-process, the
default) and `MilvusVectorIndex` (here) implement it. Both hold unit vectors keyed by gallery image id
and rank by inner product, so they return the same neighbours with the same scores.

A Milvus URI is either a Milvus Lite database (a path ending in `.db`, served in this process; one
process at a time may open it) or a Milvus server (`http://milvus:19530`). pymilvus is imported only
when a Milvus backend is opened: it takes seconds, and FAISS users never need it.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Protocol

import numpy as np

from landmarks.index.vectors import VectorRows

ID_FIELD = "id"
VECTOR_FIELD = "vector"
MAX_TOP_K = 16384  # Milvus's cap on the neighbours of one search
MAX_QUERIES = 1024  # queries per search request, keeping each gRPC message small
# Inserts go in slices of about this many bytes: gRPC refuses messages over 64 MiB.
INSERT_BYTES = 16 << 20
# Our index kinds (see vectors.INDEX_KINDS) and their Milvus counterparts.
# "sq8" is exact search over 8-bit codes: Milvus's IVF_SQ8 with one cell, all of it scanned.
MILVUS_INDEX_TYPES = {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW", "sq8": "IVF_SQ8", "ivf-sq8": "IVF_SQ8"}

_lite_lock = threading.Lock()
_lite_users: Counter[str] = Counter()  # open clients per Milvus Lite database, by absolute path


class VectorStore(Protocol):
    """Vectors of one gallery, keyed by image id, searched by inner product."""

    dim: int
    kind: str

    def __len__(self) -> int: ...

    def rebuild(self, rows: VectorRows) -> None:
        """Replace the whole content."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, min(k, len)); missing neighbours have id -1."""


def is_lite_uri(uri: str) -> bool:
    return uri.endswith(".db")


class MilvusVectorIndex:
    """One Milvus collection: an INT64 image id primary key and a FLOAT_VECTOR, IP metric."""

    def __init__(
        self, uri: str, collection: str, dim: int, kind: str = "flat", *, nprobe: int = 16, ef_search: int = 128
    ) -> None:
        """Connect to URI (credentials, if any, go in it: http://user:password@host:19530)."""
        if kind not in MILVUS_INDEX_TYPES:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(MILVUS_INDEX_TYPES)}")
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.uri, self.collection = uri, collection
        self.dim, self.kind = dim, kind
        self.nprobe, self.ef_search = nprobe, ef_search
        self._lock = threading.RLock()
        # The key Milvus Lite's server manager files its servers under.
        self._lite_path = os.path.abspath(uri) if is_lite_uri(uri) else None
        self._closed = False
        if self._lite_path:
            Path(self._lite_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(uri=uri)
        except MilvusException as exc:
            hint = (
                " (Milvus Lite lets one process at a time open a database: is the API or another command using it?)"
                if self._lite_path
                else ""
            )
            raise RuntimeError(f"cannot open Milvus at {uri}: {exc}{hint}") from exc
        if self._lite_path:
            with _lite_lock:
                _lite_users[self._lite_path] += 1
        self._count = 0
        try:
            if self._client.has_collection(collection):
                # A released collection (a restarted server, a reopened Lite file) must be loaded to be searched.
                self._client.load_collection(collection)
                self._count = self._server_count()
        except Exception:
            self.close()  # else a Milvus Lite database would stay locked by a half-open index
            raise

    def __len__(self) -> int:
        # Cached: the service asks for the size on every request, and a count is a server round trip.
        return self._count

    def _server_count(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def _create(self, expected: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        cells = {"nlist": max(16, int(4 * math.sqrt(max(expected, 1))))}  # as FAISS's IVF
        params = {
            "flat": {},
            "ivf": cells,
            "hnsw": {"M": 32, "efConstruction": 80},  # as FAISS's HNSW
            "sq8": {"nlist": 1},
            "ivf-sq8": cells,
        }[self.kind]
        index_params = self._client.prepare_index_params()
        # IP, not COSINE: the vectors are unit length, and IP is what FAISS computes, so the scores
        # (which the API's threshold reads) agree to float rounding.
        # pymilvus sends params flattened (what a server reads); Milvus Lite reads only a JSON "params"
        # entry and silently built its default 128 cells: both go, so each finds its own.
        index_params.add_index(
            field_name=VECTOR_FIELD,
            index_type=MILVUS_INDEX_TYPES[self.kind],
            metric_type="IP",
            params={**params, "params": params} if params else {},
        )
        # Strong consistency: a photo added through the API is found by the very next search.
        self._client.create_collection(self.collection, schema=schema, consistency_level="Strong")
        # Not waited for: the collection is empty, and Milvus Lite lacks the call the wait makes.
        self._client.create_index(self.collection, index_params, sync=False)
        self._client.load_collection(self.collection)

    def rebuild(self, rows: VectorRows) -> None:
        """Drop and refill the collection: searches fail until it is back, so rebuild offline."""
        with self._lock:
            if self._client.has_collection(self.collection):
                self._client.drop_collection(self.collection)
            self._create(len(rows))
            for ids, vectors in rows.read():
                self._insert(ids, vectors)
            self._client.flush(self.collection)  # seals the segments, so the server indexes them now
            self._count = self._server_count()

    def _insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        step = max(1, INSERT_BYTES // (4 * self.dim))
        for start in range(0, len(ids), step):
            rows = [
                {ID_FIELD: int(image_id), VECTOR_FIELD: vector}
                for image_id, vector in zip(ids[start : start + step], vectors[start : start + step], strict=True)
            ]
            self._client.insert(self.collection, rows)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._insert(ids, vectors)
            self._count = self._server_count()

    def remove(self, ids: np.ndarray) -> None:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        if not ids:
            return
        with self._lock:
            self._client.delete(self.collection, ids=ids)
            self._count = self._server_count()  # Milvus reports asked-for ids as deleted even when absent

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self), MAX_TOP_K)
        scores = np.full((len(queries), max(k, 0)), -np.inf, np.float32)
        ids = np.full((len(queries), max(k, 0)), -1, np.int64)
        if k <= 0 or not len(queries):
            return scores, ids
        probes = {"nprobe": self.nprobe}
        params = {
            "flat": {},
            "ivf": probes,
            "hnsw": {"ef": max(self.ef_search, k)},
            "sq8": {"nprobe": 1},
            "ivf-sq8": probes,
        }[self.kind]
        for start in range(0, len(queries), MAX_QUERIES):
            # output_fields names the id alone: with none, Milvus Lite sends every stored vector back too.
            results = self._client.search(
                self.collection,
                data=queries[start : start + MAX_QUERIES],
                limit=k,
                output_fields=[ID_FIELD],
                search_params={"metric_type": "IP", "params": params},
            )
            for row, hits in enumerate(results, start):
                for column, hit in enumerate(hits):
                    ids[row, column] = hit["id"]
                    scores[row, column] = hit["distance"]
        return scores, ids

    def flush(self) -> None:
        """Make every acknowledged write durable in Milvus's own storage."""
        with self._lock:
            if self._client.has_collection(self.collection):
                self._client.flush(self.collection)

    def drop(self) -> None:
        """Delete the collection (after migrating away from Milvus)."""
        with self._lock:
            if self._client.has_collection(self.collection):
                self._client.drop_collection(self.collection)
            self._count = 0

    def close(self) -> None:
        """Disconnect; the last client of a Milvus Lite database stops its server and unlocks the file."""
        if self._closed:
            return
        self._closed = True
        self._client.close()
        if self._lite_path:
            from milvus_lite.server_manager import server_manager_instance

            with _lite_lock:
                _lite_users[self._lite_path] -= 1
                last = _lite_users[self._lite_path] <= 0
                if last:
                    del _lite_users[self._lite_path]
            if last:
                server_manager_instance.release_server(self._lite_path)
