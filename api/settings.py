"""Service settings: command-line flags win over LANDMARKS_* environment variables over defaults.

`Settings.from_env()` is the one place the service (and the command line, which runs it) reads the
environment; the engine (`landmarks/`) gets every value as a plain argument. This module imports
nothing heavy: `landmarks up` reads it in installs without the engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PREFIX = "LANDMARKS_"
DEFAULT_INDEX_DIR = Path("data/index")
TRUE, FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use 1 or 0)")


def _typed(kind: Callable[[str], T]) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            return kind(raw.strip())
        except ValueError as exc:
            raise ValueError(f"{name}={raw!r}: expected {'an' if kind is int else 'a'} {kind.__name__}") from exc

    return parse


parse_int, parse_float = _typed(int), _typed(float)


def parse_path(name: str, raw: str) -> Path:
    return Path(raw.strip())


def parse_list(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_floats(name: str, raw: str) -> tuple[float, ...]:
    return tuple(parse_float(name, part) for part in parse_list(name, raw))


@dataclass(frozen=True)
class Settings:
    index_dir: Path = DEFAULT_INDEX_DIR
    # None: the registered model that built the index (an index outlives a change of the default), else
    # the default model (landmarks.models.resolve_model).
    model: str | None = None
    # Local pretrained weights for a named model (a timm state dict, or open_clip's checkpoint for
    # clip_vit_b16): the file the index was built with, so that no download is needed.
    weights_file: Path | None = None
    device: str | None = None
    # The operating threshold on confidence; None: the calibration's, else 0.5 (landmarks/search.py).
    threshold: float | None = None
    max_upload_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000
    cors_origins: tuple[str, ...] = ()
    # Micro-batching of concurrent searches (see api/batching.py).
    batching: bool = True
    # Unset: 16 on CUDA, 4 on CPU. On 2 CPU cores ONNX Runtime embeds ~1.4x more photos a second in
    # batches of 4 than one by one, and fewer in batches of 16 (bigger activations fall out of cache).
    batch_max_size: int | None = None
    batch_max_wait_ms: float = 5.0
    queue_max: int = 64
    # Writes (gallery management) need this key in X-API-Key; without a key, writes are disabled.
    api_key: str | None = field(default=None, repr=False)
    protect_reads: bool = False
    # Where the vectors live: faiss or milvus (unset: the backend the index was built or migrated for).
    vector_backend: str | None = None
    # A Milvus Lite file (*.db) or a server (http://milvus:19530); unset: the index's last one, else INDEX_DIR/milvus.db.
    milvus_uri: str | None = None
    rate_limit: str = ""  # "60/minute" per client IP; empty: off
    # Embedding runtime (landmarks/models/runtime.py). "auto": ONNX Runtime on CPU (the same vectors as
    # eager PyTorch, several times faster, after a one-off export cached on disk), eager on CUDA.
    runtime: str = "auto"
    # The address clients reach the service at (e.g. https://landmarks.example.org): photo URLs in
    # answers are built on it. Unset: from the request's Host header, which any client can set.
    public_url: str | None = None
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or
    # networks). Empty: none, so no client can pick its own address for the rate limit.
    trusted_proxies: tuple[str, ...] = ()
    # Decoded photos held at once (searches and uploads between decode and embedding, thumbnails),
    # and the memory their decoding may take together (see api/decoding.py).
    max_decodes: int = field(default_factory=lambda: max(8, 2 * (os.cpu_count() or 1)))
    decode_memory_mb: int = 1024
    # Connection guards (api/server.py): open connections at most; seconds a client may take to send
    # a request's headers; seconds a request body may stall between two chunks.
    max_connections: int = 4096
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # JSON logs at this level and above (landmarks/logs.py).
    log_level: str = "warning"
    # The ONNX export cache (LANDMARKS_CACHE_DIR, else XDG_CACHE_HOME/landmarks); None: the engine's
    # default, ~/.cache/landmarks.
    cache_dir: Path | None = None
    # The slim image's exported models (LANDMARKS_EXPORTED_MODELS); None: the engine's default, /app/models.
    exported_dir: Path | None = None
    # ONNX Runtime threads of an exported model (OMP_NUM_THREADS, as PyTorch); None: one per core.
    onnx_threads: int | None = None
    # Local features at index build time, for spatial verification (LANDMARKS_LOCAL_FEATURES=1/0: always,
    # never); None: when spatial verification is on (LANDMARKS_SPATIAL). They cost a second decode and
    # SIFT per photo (about a third of a build's time, bench/indexing.py) and 25 KB a photo on disk, for a
    # stage that is off by default; `index build` with spatial verification on adds what is missing.
    local_features: bool | None = None
    # The search stages' LANDMARKS_<FIELD> variables, as given: `search_config` parses them.
    search_env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives; unset or blank variables leave the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}

        def read(
            name: str, parse: Callable[[str, str], object], *, key: str | None = None, prefix: str = PREFIX
        ) -> None:
            variable = prefix + name
            raw = env.get(variable, "")
            if raw.strip():
                values[key or name.lower()] = parse(variable, raw)

        def text(variable: str, raw: str) -> str:
            return raw.strip()

        read("INDEX_DIR", parse_path)
        read("MODEL", text)
        read("WEIGHTS_FILE", parse_path)
        read("DEVICE", text)
        read("THRESHOLD", parse_float)
        read("MAX_UPLOAD_BYTES", parse_int)
        read("MAX_PIXELS", parse_int)
        read("CORS_ORIGINS", parse_list)
        read("BATCHING", parse_bool)
        read("BATCH_MAX_SIZE", parse_int)
        read("BATCH_MAX_WAIT_MS", parse_float)
        read("QUEUE_MAX", parse_int)
        read("API_KEY", lambda variable, raw: raw)  # a secret, used exactly as given
        read("PROTECT_READS", parse_bool)
        read("VECTOR_BACKEND", text)
        read("MILVUS_URI", text)
        read("RATE_LIMIT", text)
        read("RUNTIME", text)
        read("PUBLIC_URL", lambda variable, raw: raw.strip().rstrip("/") or None)
        read("TRUSTED_PROXIES", parse_list)
        read("MAX_DECODES", parse_int)
        read("DECODE_MEMORY_MB", parse_int)
        read("MAX_CONNECTIONS", parse_int)
        read("HEADER_TIMEOUT", parse_float)
        read("BODY_TIMEOUT", parse_float)
        read("LOG_LEVEL", text)
        read(
            "XDG_CACHE_HOME", lambda variable, raw: parse_path(variable, raw) / "landmarks", key="cache_dir", prefix=""
        )
        read("CACHE_DIR", parse_path)  # wins over XDG_CACHE_HOME
        read("EXPORTED_MODELS", parse_path, key="exported_dir")
        read("OMP_NUM_THREADS", parse_int, key="onnx_threads", prefix="")
        read("LOCAL_FEATURES", parse_bool)
        values["search_env"] = {k: v for k, v in env.items() if k.startswith(PREFIX)}
        return cls(**values)

    def search_config(self, **overrides):
        """The search stages (landmarks.search.SearchConfig): LANDMARKS_<FIELD> variables (upper case)
        over the defaults, the operator's threshold, then `overrides`.

        Booleans: 1/0, true/false, yes/no, on/off. LANDMARKS_SCALES: comma-separated, e.g. "1,0.75".
        """
        from landmarks.search import SearchConfig

        parsers: dict[type, Callable[[str, str], object]] = {
            bool: parse_bool,
            int: parse_int,
            float: parse_float,
            str: lambda name, raw: raw.strip(),
        }
        defaults = SearchConfig()
        values: dict[str, object] = {"threshold": self.threshold}
        for f in fields(SearchConfig):
            variable = PREFIX + f.name.upper()
            raw = self.search_env.get(variable, "")
            if f.name == "threshold" or not raw.strip():
                continue
            parse = parse_floats if f.name == "scales" else parsers[type(getattr(defaults, f.name))]
            values[f.name] = parse(variable, raw)
        return SearchConfig(**{**values, **overrides})

    def model_files(self) -> dict[str, object]:
        """The folders and threads `landmarks.models.load_extractor` takes from the environment."""
        return {"cache_dir": self.cache_dir, "threads": self.onnx_threads, "exported_dir": self.exported_dir}

    def landmark_prior(self):
        """The landmark prior (landmarks.quality.prior) from the exported models or the ONNX cache, or None
        with a warning where it cannot be had (a slim image exported without it): no landmark gate then."""
        from landmarks.quality.prior import load_prior

        try:
            return load_prior(**self.model_files())
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            logging.getLogger(__name__).warning("no landmark prior (%s): non-landmark photos are not gated", exc)
            return None

    def local_feature_params(self):
        """What the index build extracts for spatial verification: the search's local features, or None."""
        config = self.search_config()
        wanted = config.spatial if self.local_features is None else self.local_features
        return config.local_params if wanted else None
