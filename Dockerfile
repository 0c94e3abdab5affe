# Landmark Search images, all from this one file, built from the repository root (the compose files do):
#   full  the API with PyTorch, `landmarks serve` on port 8000, data under /app/data: any model (TorchScript
#         files, checkpoints, DeiT, CLIP). The GPU image (the default: a CUDA runtime base and uv group
#         `api-gpu`, faiss-gpu):
#           docker build --target full -t landmark-search-api:gpu .
#         or on CPU (group `api`, faiss-cpu, slim Python):
#           docker build --target full --build-arg UV_GROUP=api \
#               --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t landmark-search-api:cpu-full .
#   slim  (the last stage, so the default target) the CPU API without torch: ONNX Runtime, faiss-cpu and
#         the default model exported to ONNX by the `onnx-export` stage (uv group `api-slim`):
#           docker build --build-arg UV_GROUP=api \
#               --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t landmark-search-api:cpu .
#   web   the web page, `streamlit run web/app.py` on port 8501 (uv group `web`):
#           docker build --target web --build-arg LIGHT_GROUP=web -t landmark-search-web .
#           docker run -p 8501:8501 -e LANDMARKS_API_URL=http://API_HOST:8000 landmark-search-web
#   bot   the Telegram bot, `python -m bot` (uv group `bot`; TELEGRAM_BOT_TOKEN, see bot/bot.env.example):
#           docker build --target bot --build-arg LIGHT_GROUP=bot -t landmark-search-bot .
#           docker run --env-file bot/bot.env -e LANDMARKS_API_URL=http://API_HOST:8000 landmark-search-bot
# web and bot have no torch and no faiss: they talk to the API over HTTP only (LANDMARKS_API_URL).
# slim, web and bot are one `light` stage (slim Python, one uv group) with their own last steps on top;
# LIGHT_GROUP names the group, and with it the folders, that `light` installs, so it must be the target's
# (each of the three targets fails the build when it is not).
# torch 2.14 from PyPI ships its own CUDA 13 libraries, so the GPU host needs an NVIDIA driver for CUDA 13
# (>= 580) and the NVIDIA Container Toolkit; the image does not need a CUDA toolkit of its own.
#
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret; uv reads it through
# SSL_CERT_FILE while installing, and it never lands in a layer:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt ...
# (No `# syntax=` line: it would make BuildKit pull a frontend image; the built-in one has RUN --mount.)
ARG BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_VERSION=0.13.9
# The uv group of the light image: api-slim (target slim), web or bot.
ARG LIGHT_GROUP=api-slim

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# Each service's own folders: what its image copies besides pyproject.toml, uv.lock, .python-version and
# README.md. The light images pick theirs by uv group (sources-${LIGHT_GROUP}).
FROM scratch AS sources-api
COPY landmarks /landmarks
COPY cli /cli
COPY api /api

FROM sources-api AS sources-api-slim

FROM scratch AS sources-web
# web/ brings web/.streamlit/config.toml (theme, upload limit), which Streamlit reads beside app.py.
COPY client /client
COPY web /web

FROM scratch AS sources-bot
COPY client /client
COPY bot /bot

FROM sources-${LIGHT_GROUP} AS sources

FROM ${BASE_IMAGE} AS full
# `api-gpu` (faiss-gpu) or `api` (faiss-cpu): they conflict, so an environment holds exactly one.
ARG UV_GROUP=api-gpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH

# A non-root user (uid/gid 1000, the usual owner of a bind-mounted ./data). Ubuntu bases already
# have a user 1000 (`ubuntu`): it makes way.
RUN if id -u 1000 >/dev/null 2>&1; then userdel --remove "$(id -un 1000)" 2>/dev/null || true; fi \
 && if group="$(getent group 1000)"; then groupdel "${group%%:*}"; fi \
 && groupadd --gid 1000 app \
 && useradd --uid 1000 --gid app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first (a layer that survives source edits): only this image's group, exactly as
# locked. Python 3.11 comes from the base image when it has one, else uv installs it under /opt/python.
# (The light stage below repeats these two uv steps for its own group: a stage runs once per build, and
# building slim builds full too, for the export.)
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca_bundle \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=.python-version,target=.python-version \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && uv sync --frozen --no-default-groups --group "${UV_GROUP}" --no-install-project

COPY pyproject.toml uv.lock .python-version README.md ./
COPY --from=sources-api / ./
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && uv sync --frozen --no-default-groups --group "${UV_GROUP}" \
 && mkdir -p /app/data \
 && chown app:app /app/data

# Run-time files: the gallery, the index and checkpoints live on a volume mounted at /app/data.
# Downloaded model weights (hub backbones) are cached there too, so they survive restarts.
ENV LANDMARKS_INDEX_DIR=/app/data/index \
    XDG_CACHE_HOME=/app/data/cache

# Numeric, so orchestrators can tell it is not root (1000 is `app`).
USER 1000:1000
EXPOSE 8000
# /ready is 200 once the model and the index are loaded; loading takes a while on first start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]

# The CUDA base's entrypoint only prints a banner; without it, both variants run commands alike.
ENTRYPOINT []
CMD ["landmarks", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The default model as ONNX, exported where torch is (landmarks/models/exported.py); the export checks
# itself against eager PyTorch and fails the build if the two disagree.
FROM full AS onnx-export
ARG EXPORT_MODEL=efficientnet_lite_ensemble
USER root
RUN LANDMARKS_CACHE_DIR=/tmp/landmarks-cache landmarks export-onnx "${EXPORT_MODEL}" /opt/landmarks/models \
 && rm -rf /tmp/landmarks-cache

# The light base of slim, web and bot: the base's Python, one uv group (LIGHT_GROUP), its folders.
FROM ${PYTHON_IMAGE} AS light

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH

# The non-root user (uid/gid 1000); the slim Python base has none to make way.
RUN groupadd --gid 1000 app \
 && useradd --uid 1000 --gid app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Declared here, not above, so that the layers above are one for all three images.
ARG LIGHT_GROUP
# Only this image's group, exactly as locked: api-slim (onnxruntime and faiss-cpu, no torch),
# web (streamlit, pandas, httpx) or bot (aiogram, httpx).
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca_bundle \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=.python-version,target=.python-version \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && uv sync --frozen --no-default-groups --group "${LIGHT_GROUP}" --no-install-project

COPY pyproject.toml uv.lock .python-version README.md ./
COPY --from=sources / ./
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && uv sync --frozen --no-default-groups --group "${LIGHT_GROUP}"

FROM light AS web
ARG LIGHT_GROUP
RUN [ "${LIGHT_GROUP}" = web ] || { echo "target web needs --build-arg LIGHT_GROUP=web" >&2; exit 1; }

# In compose the API is the `api` service; elsewhere set LANDMARKS_API_URL (see web/web.env.example).
ENV LANDMARKS_API_URL=http://api:8000 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

# Numeric, so orchestrators can tell it is not root (1000 is `app`).
USER 1000:1000
EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

CMD ["streamlit", "run", "web/app.py"]

FROM light AS bot
ARG LIGHT_GROUP
RUN [ "${LIGHT_GROUP}" = bot ] || { echo "target bot needs --build-arg LIGHT_GROUP=bot" >&2; exit 1; } \
 && mkdir -p /app/data/bot \
 && chown -R app:app /app/data

# The bot's own state (per-user settings, recent searches) is a SQLite file; mount a volume here.
ENV LANDMARKS_API_URL=http://api:8000 \
    BOT_DB_PATH=/app/data/bot/bot.sqlite3

# Numeric, so orchestrators can tell it is not root (1000 is `app`).
USER 1000:1000
# Only used in webhook mode (BOT_WEBHOOK_URL set); polling, the default, listens on nothing.
EXPOSE 8080
# Polling opens no port, so the check is the bot's one dependency it can see: the API answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('LANDMARKS_API_URL', 'http://api:8000').rstrip('/') + '/health', timeout=4)"]

CMD ["python", "-m", "bot"]

# The CPU API without torch, on the light base with group api-slim (the default LIGHT_GROUP).
FROM light AS slim
ARG LIGHT_GROUP
RUN [ "${LIGHT_GROUP}" = api-slim ] || { echo "target slim needs LIGHT_GROUP=api-slim" >&2; exit 1; } \
 && mkdir -p /app/data \
 && chown app:app /app/data
COPY --from=onnx-export /opt/landmarks/models /app/models

ENV LANDMARKS_INDEX_DIR=/app/data/index \
    XDG_CACHE_HOME=/app/data/cache \
    LANDMARKS_EXPORTED_MODELS=/app/models \
    LANDMARKS_DEVICE=cpu

USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD ["landmarks", "serve", "--host", "0.0.0.0", "--port", "8000"]
