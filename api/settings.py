"""Service settings: command-line flags win over LANDMARKS_* environment variables over defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LANDMARKS_{name}", default)


@dataclass(frozen=True)
class Settings:
    index_dir: Path = field(default_factory=lambda: Path(_env("INDEX_DIR", "data/index")))
    # None: the registered model that built the index (an index outlives a change of the default), else
    # the default model (landmarks.models.resolve_model).
    model: str | None = field(default_factory=lambda: os.environ.get("LANDMARKS_MODEL") or None)
    # Local pretrained weights for a named model (a timm state dict, or open_clip's checkpoint for
    # clip_vit_b16): the file the index was built with, so that no download is needed.
    weights_file: Path | None = field(default_factory=lambda: Path(os.environ["LANDMARKS_WEIGHTS_FILE"]) if os.environ.get("LANDMARKS_WEIGHTS_FILE") else None)
    device: str | None = field(default_factory=lambda: os.environ.get("LANDMARKS_DEVICE") or None)
    threshold: float = field(default_factory=lambda: float(_env("THRESHOLD", "0.63")))
    max_upload_bytes: int = field(default_factory=lambda: int(_env("MAX_UPLOAD_BYTES", str(15 * 1024 * 1024))))
    max_pixels: int = field(default_factory=lambda: int(_env("MAX_PIXELS", "40000000")))
    cors_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(o.strip() for o in _env("CORS_ORIGINS", "").split(",") if o.strip())
    )
    # Micro-batching of concurrent searches (see api/batching.py).
    batching: bool = field(default_factory=lambda: _env("BATCHING", "1") not in ("0", "false", "no"))
    # Unset: 16 on CUDA, 4 on CPU. On 2 CPU cores ONNX Runtime embeds ~1.4x more photos a second in
    # batches of 4 than one by one, and fewer in batches of 16 (bigger activations fall out of cache).
    batch_max_size: int | None = field(default_factory=lambda: int(os.environ["LANDMARKS_BATCH_MAX_SIZE"]) if os.environ.get("LANDMARKS_BATCH_MAX_SIZE") else None)
    batch_max_wait_ms: float = field(default_factory=lambda: float(_env("BATCH_MAX_WAIT_MS", "5")))
    queue_max: int = field(default_factory=lambda: int(_env("QUEUE_MAX", "64")))
    # Writes (gallery management) need this key in X-API-Key; without a key, writes are disabled.
    api_key: str | None = field(default_factory=lambda: os.environ.get("LANDMARKS_API_KEY") or None, repr=False)
    protect_reads: bool = field(default_factory=lambda: _env("PROTECT_READS", "0") in ("1", "true", "yes"))
    # Where the vectors live: faiss or milvus (unset: the backend the index was built or migrated for).
    vector_backend: str | None = field(default_factory=lambda: os.environ.get("LANDMARKS_VECTOR_BACKEND") or None)
    # A Milvus Lite file (*.db) or a server (http://milvus:19530); unset: the index's last one, else INDEX_DIR/milvus.db.
    milvus_uri: str | None = field(default_factory=lambda: os.environ.get("LANDMARKS_MILVUS_URI") or None)
    rate_limit: str = field(default_factory=lambda: _env("RATE_LIMIT", "").strip())  # "60/minute" per client IP; empty: off
    # Embedding runtime (landmarks/models/runtime.py). "auto": ONNX Runtime on CPU (the same vectors as
    # eager PyTorch, several times faster, after a one-off export cached on disk), eager on CUDA.
    runtime: str = field(default_factory=lambda: _env("RUNTIME", "auto"))
    # The address clients reach the service at (e.g. https://landmarks.example.org): photo URLs in
    # answers are built on it. Unset: from the request's Host header, which any client can set.
    public_url: str | None = field(default_factory=lambda: (os.environ.get("LANDMARKS_PUBLIC_URL") or "").rstrip("/") or None)
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or
    # networks). Empty: none, so no client can pick its own address for the rate limit.
    trusted_proxies: tuple[str, ...] = field(
        default_factory=lambda: tuple(p.strip() for p in _env("TRUSTED_PROXIES", "").split(",") if p.strip())
    )
    # Decoded photos held at once (searches and uploads between decode and embedding, thumbnails),
    # and the memory their decoding may take together (see api/decoding.py).
    max_decodes: int = field(default_factory=lambda: int(_env("MAX_DECODES", str(max(8, 2 * (os.cpu_count() or 1))))))
    decode_memory_mb: int = field(default_factory=lambda: int(_env("DECODE_MEMORY_MB", "1024")))
    # Connection guards (api/server.py): open connections at most; seconds a client may take to send
    # a request's headers; seconds a request body may stall between two chunks.
    max_connections: int = field(default_factory=lambda: int(_env("MAX_CONNECTIONS", "4096")))
    header_timeout: float = field(default_factory=lambda: float(_env("HEADER_TIMEOUT", "10")))
    body_timeout: float = field(default_factory=lambda: float(_env("BODY_TIMEOUT", "30")))
