#!/usr/bin/env bash
# Prepare what a machine lacks to run the README's Docker commands, each step skipped where it is
# already there: the engine (Debian's docker.io, dockerd started as root), the Compose v2 and buildx CLI
# plugins (Debian trixie's packages: bookworm has neither), and, only where the base images can be
# neither found locally nor pulled, local stand-ins tagged with the names the Dockerfile uses.
# A machine with a normal Docker and registry access ends up using the real images.
#
# Root is needed for the installs and for dockerd. Every wait is bounded.
set -euo pipefail

log() { printf '[prepare] %s\n' "$*" >&2; }
die() { printf '[prepare] FAILED: %s\n' "$*" >&2; exit 1; }

PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
UV_VERSION=${UV_VERSION:-$(sed -n 's/^ARG UV_VERSION=//p' "$(dirname "$0")/../Dockerfile")}
UV_IMAGE="ghcr.io/astral-sh/uv:${UV_VERSION}"
STATE=${LANDMARKS_DEPLOY_STATE:-/var/cache/landmarks-deploy}
PLUGINS=/usr/libexec/docker/cli-plugins
mkdir -p "$STATE"
export DEBIAN_FRONTEND=noninteractive

# The Debian archive this machine's apt already uses (not -security, not third-party repositories).
debian_mirror() {
    local m=${DEBIAN_MIRROR:-}
    [ -n "$m" ] || m=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 | tr -d ' ' || true)
    [ -n "$m" ] || die "no Debian mirror found in /etc/apt (set DEBIAN_MIRROR)"
    echo "${m%/}"
}

apt_updated=
apt_install() {
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. The engine.
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    apt_install docker.io
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $STATE/dockerd.log)"
    # A stale pid file from a killed daemon stops the next one from starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then rm -f /var/run/docker.pid; fi
    if [ -f /run/containerd/containerd.pid ] && ! kill -0 "$(cat /run/containerd/containerd.pid)" 2>/dev/null; then rm -f /run/containerd/containerd.pid; fi
    nohup setsid dockerd >"$STATE/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
fi

# 2. Compose v2 and buildx (BuildKit's CLI): trixie's packages, fetched with a private apt state so the
#    machine's own sources stay bookworm.
if ! docker compose version >/dev/null 2>&1 || ! docker buildx version >/dev/null 2>&1; then
    log "fetching docker-compose and docker-buildx from Debian trixie"
    mirror=$(debian_mirror)
    apt_dir="$STATE/apt-trixie"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/debs" "$apt_dir/root"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt_dir/sources.list"
    opts=(-oDir::Etc::SourceList="$apt_dir/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$apt_dir/lists")
    apt-get "${opts[@]}" update -qq
    (cd "$apt_dir/debs" && apt-get "${opts[@]}" download docker-compose docker-buildx)
    for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$apt_dir/root"; done
    mkdir -p "$PLUGINS"
    cp "$apt_dir"/root/usr/libexec/docker/cli-plugins/* "$PLUGINS/"
    docker compose version >/dev/null && docker buildx version >/dev/null || die "the CLI plugins do not answer"
fi
log "$(docker compose version) / $(docker buildx version)"

# 3. Base images: local, else pulled, else a stand-in built here.
have() { docker image inspect "$1" >/dev/null 2>&1; }
pull() { timeout 120 docker pull -q "$1" >/dev/null 2>&1; }

if ! have "$PYTHON_IMAGE" && ! pull "$PYTHON_IMAGE"; then
    log "building a stand-in for $PYTHON_IMAGE (debootstrap bookworm + python3.11)"
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    rootfs="$STATE/rootfs"
    rm -rf "$rootfs"
    mirror=$(debian_mirror)
    debootstrap --variant=minbase --include=python3.11,ca-certificates bookworm "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
        || { tail -20 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    # The official image's names for the interpreter.
    ln -sf python3.11 "$rootfs/usr/bin/python3"
    ln -sf python3.11 "$rootfs/usr/bin/python"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' -c 'ENV LANG=C.UTF-8' - "$PYTHON_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi

if ! have "$UV_IMAGE" && ! pull "$UV_IMAGE"; then
    log "building a stand-in for $UV_IMAGE (the uv binary from PyPI's uv $UV_VERSION wheel)"
    work=$(mktemp -d)
    # uv installs the wheel itself (a venv's python may have no pip); pip where uv is missing.
    if command -v uv >/dev/null 2>&1; then
        uv pip install -q --no-deps --target "$work/wheel" "uv==$UV_VERSION"
    else
        python3 -m pip install -q --no-deps --target "$work/wheel" "uv==$UV_VERSION"
    fi
    mkdir -p "$work/root"
    install -m 0755 "$work/wheel/bin/uv" "$work/root/uv"
    install -m 0755 "$work/wheel/bin/uvx" "$work/root/uvx"
    tar -C "$work/root" -c . | docker import -c 'ENTRYPOINT ["/uv"]' - "$UV_IMAGE" >/dev/null
    rm -rf "$work"
fi
log "bases: $PYTHON_IMAGE, $UV_IMAGE"
