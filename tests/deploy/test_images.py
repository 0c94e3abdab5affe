"""The Dockerfiles, the build context and uv.lock: each image installs its own group and nothing heavier.

Static checks only (no Docker engine here): the Dockerfiles are read, not built.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.files import (
    DOCKERFILES,
    build_args,
    checkout_files,
    dockerfile,
    env_vars,
    exec_form,
    final_stage,
    group_closure,
    healthcheck,
    in_build_context,
    instructions,
    uv_sync_commands,
)
from tests.support import REPO_ROOT

# service -> the uv group its image installs (the api's default; the CPU build passes `api`)
GROUPS = {"api": "api-gpu", "web": "web", "bot": "bot"}
# The api Dockerfile's `slim` stage (the CPU API without torch) installs its own fixed group.
SLIM_GROUP = "api-slim"
HEAVY = re.compile(
    r"^(torch|torchvision|torchaudio|triton|timm|faiss(-.*)?|nvidia-.*|cuda-.*|opencv.*|efficientnet-.*)$"
)
PYTHON = (REPO_ROOT / ".python-version").read_text().strip()
# The top-level source folders the images copy.
SOURCE_PACKAGES = {"landmarks", "cli", "api", "client", "bot", "web"}


def pyproject() -> dict:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_installs_only_its_own_group_from_the_lock(service):
    path = DOCKERFILES[service]
    syncs = uv_sync_commands(path)
    assert syncs, f"{path}: no `uv sync`"
    args = build_args(path)
    for argv in syncs:
        assert "--frozen" in argv or "--locked" in argv, f"{path}: {argv} may re-resolve instead of using uv.lock"
        assert "--no-default-groups" in argv, f"{path}: {argv} would also install the default group (dev: everything)"
        for flag in ("--all-groups", "--all-extras", "--extra", "--only-dev", "--dev", "--only-group"):
            assert flag not in argv, f"{path}: {argv} uses {flag}"
        groups = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--group"]
        assert len(groups) == 1, f"{path}: {argv} installs groups {groups}"
        group = groups[0]
        if group.startswith("${"):
            group = args[group.strip("${}")]
        allowed = {GROUPS[service], SLIM_GROUP} if service == "api" else {GROUPS[service]}
        assert group in allowed, f"{path}: installs group {group}, not {GROUPS[service]}"
    # No other installer can slip packages past the lock.
    text = " ".join(i.rest for i in instructions(path, "RUN"))
    assert not re.search(r"\bpip3? install\b|\buv pip\b|\buv add\b|\bconda\b", text), (
        f"{path}: installs packages outside uv.lock"
    )


def test_api_group_is_a_build_arg_of_the_two_lockable_api_groups():
    args = build_args(DOCKERFILES["api"])
    groups = pyproject()["dependency-groups"]
    assert args["UV_GROUP"] == "api-gpu" and {"api", "api-gpu"} <= set(groups)
    conflicts = pyproject()["tool"]["uv"]["conflicts"]
    assert [{"group": "api"}, {"group": "api-gpu"}] in conflicts, "api and api-gpu must stay separate environments"


def test_groups_resolve_transitively_without_torch_or_faiss_for_bot_and_web():
    for group in ("bot", "web"):
        closure = group_closure(group)
        heavy = sorted(name for name in closure if HEAVY.match(name))
        assert not heavy, f"uv group {group} pulls in {heavy} (transitively, per uv.lock)"
    bot, web = group_closure("bot"), group_closure("web")
    assert {"aiogram", "httpx"} <= bot and {"streamlit", "pandas", "httpx"} <= web
    gpu, cpu = group_closure("api-gpu"), group_closure("api")
    assert {"faiss-gpu", "torch", "fastapi", "uvicorn"} <= gpu and "faiss-cpu" not in gpu
    assert {"faiss-cpu", "torch", "fastapi", "uvicorn"} <= cpu and "faiss-gpu" not in cpu


def test_bases_cuda_runtime_for_the_api_and_slim_python_for_bot_and_web():
    api_base = build_args(DOCKERFILES["api"])["BASE_IMAGE"]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", api_base), api_base
    for service in ("web", "bot"):
        base = build_args(DOCKERFILES[service])["PYTHON_IMAGE"]
        assert re.fullmatch(rf"python:{re.escape(PYTHON)}-slim(-\w+)?", base), f"{service}: {base}"
        assert env_vars(DOCKERFILES[service]).get("UV_PYTHON_DOWNLOADS") == "never", (
            f"{service} must use the base's Python"
        )
    for service, path in DOCKERFILES.items():
        (final,) = [i for i in final_stage(path)[:1]]
        base = final.rest.split(" AS ")[0]
        assert base in ("${BASE_IMAGE}", "${PYTHON_IMAGE}"), f"{service}: the shipped stage is FROM {final.rest}"
    # The slim CPU API stage has no torch; the export stage that feeds it does.
    slim = group_closure(SLIM_GROUP)
    assert {"onnxruntime", "faiss-cpu", "fastapi", "uvicorn"} <= slim, slim
    assert not sorted(name for name in slim if re.match(r"^(torch|torchvision|timm|nvidia-.*|faiss-gpu)$", name))


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_runs_as_non_root_with_a_healthcheck(service):
    path = DOCKERFILES[service]
    stage = final_stage(path)
    users = [i for i in stage if i.keyword == "USER"]
    assert users, f"{path}: runs as root"
    user = users[-1].rest.split(":")[0]
    assert user not in ("root", "0"), f"{path}: USER {users[-1].rest}"
    assert re.search(rf"useradd\b[^&]*--uid {user}\b", path.read_text()), f"{path}: user {user} is never created"
    (cmd,) = [i for i in stage if i.keyword == "CMD"]
    assert users[-1].line < cmd.line
    options, probe = healthcheck(path)
    assert probe[0] == "python", f"{path}: the slim images have no curl; probe with python"
    exposed = [i.rest for i in stage if i.keyword == "EXPOSE"]
    if service != "bot":  # the bot's probe is the API it talks to; the others probe themselves
        assert any(f"127.0.0.1:{port}/" in " ".join(probe) for port in exposed), (
            f"{path}: healthcheck misses EXPOSE {exposed}"
        )
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert exec_form(cmd.rest), f"{path}: CMD must use the exec form (signals reach the process)"


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_copies_only_what_the_build_context_keeps(service):
    path = DOCKERFILES[service]
    for copy in instructions(path, "COPY"):
        if copy.rest.startswith("--from"):
            continue
        *sources, _destination = copy.rest.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{path}: COPY {source}: no such file"
            assert in_build_context(source), f"{path}: COPY {source}, but .dockerignore drops it"
    for run in instructions(path, "RUN"):
        for source in re.findall(r"type=bind,source=([^,\s]+)", run.rest):
            assert in_build_context(source), f"{path}: bind-mounts {source}, but .dockerignore drops it"
    # What the service imports at run time is in its image.
    copied = {source for copy in instructions(path, "COPY") for source in copy.rest.split()[:-1]}
    assert service in copied and "pyproject.toml" in copied and "uv.lock" in copied
    if service == "api":
        assert "landmarks" in copied
        # Every stage that runs the `landmarks` command (the CMD of full and slim) has its package.
        stages, current = [], []
        for instruction in dockerfile(path):
            if instruction.keyword == "FROM":
                stages.append(current := [])
            current.append(instruction)
        for stage in stages:
            runs_cli = any(i.keyword == "CMD" and exec_form(i.rest)[0] == "landmarks" for i in stage)
            stage_copies = {source for i in stage if i.keyword == "COPY" for source in i.rest.split()[:-1]}
            if runs_cli:
                assert {"landmarks", "cli", "api"} <= stage_copies, (
                    f"{path}: {stage[0].rest} runs `landmarks` without cli/"
                )
    else:  # bot and web reach the API through the shared client package
        assert "client" in copied


def test_build_context_is_small_and_keeps_data_checkpoints_and_caches_out():
    must_stay_out = [
        "data/gallery/taj_mahal/1.jpg",
        "data/index/gallery.sqlite",
        "data/checkpoints/best.pt",
        "data/cache/huggingface/hub/model.safetensors",
        ".venv/bin/python",
        ".git/HEAD",
        "landmarks/__pycache__/cli.cpython-311.pyc",
        "api/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".hypothesis/examples/x",
        "web/web.env",
        "bot/bot.env",
        "web/.streamlit/secrets.toml",
        "tests/support.py",
        "checkpoints/model.ckpt",
    ]
    for path in must_stay_out:
        assert not in_build_context(path), f"{path} would be sent to the Docker daemon"
    for path in (
        "pyproject.toml",
        "uv.lock",
        ".python-version",
        "README.md",
        "cli/up.py",
        "api/app.py",
        "client/sync.py",
        "web/app.py",
        "web/.streamlit/config.toml",
        "bot/__main__.py",
    ):
        assert in_build_context(path), f"{path} is needed by an image but .dockerignore drops it"
    files = checkout_files()
    dropped = [
        name
        for name in files
        if name.endswith(".py") and name.split("/")[0] in SOURCE_PACKAGES and not in_build_context(name)
    ]
    assert not dropped, f".dockerignore drops source files the images need: {dropped}"
    kept = [name for name in files if in_build_context(name)]
    size = sum((REPO_ROOT / name).stat().st_size for name in kept)
    assert size < 5 * 2**20, f"build context of {size / 2**20:.1f} MiB: {sorted(kept)[:20]}..."
    assert all(name.split("/")[0] in SOURCE_PACKAGES or "/" not in name for name in kept)
