"""The Dockerfile, the build context and uv.lock: each image installs its own group and nothing heavier.

Static checks only (no Docker engine here): the Dockerfile is read, not built. Each image is checked as
the compose files build it (target and build args), by its tag.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.files import (
    CPU_OVERRIDE,
    DOCKERFILE,
    ROOT_COMPOSE,
    build_args,
    build_target,
    checkout_files,
    copied_sources,
    copy_from,
    dockerfile,
    env_vars,
    exec_form,
    expand,
    group_closure,
    healthcheck,
    image,
    image_stages,
    in_build_context,
    interpolate,
    load_compose,
    merge_build,
    of,
    stages,
    uv_sync_commands,
)
from tests.support import REPO_ROOT

# image tag -> (the service it runs, the uv group it installs)
IMAGES = {
    "landmark-search-api:gpu": ("api", "api-gpu"),
    "landmark-search-api:cpu-full": ("api", "api"),
    # The `slim` target (the CPU API without torch) installs its own fixed group.
    "landmark-search-api:cpu": ("api", "api-slim"),
    "landmark-search-web": ("web", "web"),
    "landmark-search-bot": ("bot", "bot"),
}
# The targets built on the shared light stage, and the LIGHT_GROUP each must be built with.
LIGHT_TARGETS = {"slim": "api-slim", "web": "web", "bot": "bot"}
HEAVY = re.compile(
    r"^(torch|torchvision|torchaudio|triton|timm|faiss(-.*)?|nvidia-.*|cuda-.*|opencv.*|efficientnet-.*)$"
)
PYTHON = (REPO_ROOT / ".python-version").read_text().strip()
# The top-level source folders the images copy.
SOURCE_PACKAGES = {"landmarks", "cli", "api", "client", "bot", "web"}


def pyproject() -> dict:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def built_images() -> dict[str, tuple[str | None, dict[str, str]]]:
    """image tag -> (target, build args), as the root compose file, and it with the CPU override, build them."""
    root = load_compose(ROOT_COMPOSE)["services"]
    override = load_compose(CPU_OVERRIDE)["services"]
    services = [*root.values(), *(merge_build(root[name], cpu) for name, cpu in override.items())]
    return {interpolate(service["image"]): build_target(service) for service in services}


def test_compose_builds_these_images():
    images = built_images()
    assert set(images) == set(IMAGES), sorted(images)
    assert images["landmark-search-api:cpu"][0] == "slim" and images["landmark-search-api:gpu"][0] == "full"


@pytest.mark.parametrize("tag", sorted(IMAGES))
def test_installs_only_its_own_group_from_the_lock(tag):
    target, args = built_images()[tag]
    instructions = image(target, args)
    syncs = uv_sync_commands(instructions)
    assert syncs, f"{tag}: no `uv sync`"
    values = {**build_args(), **args}
    for argv in syncs:
        assert "--frozen" in argv or "--locked" in argv, f"{tag}: {argv} may re-resolve instead of using uv.lock"
        assert "--no-default-groups" in argv, f"{tag}: {argv} would also install the default group (dev: everything)"
        for flag in ("--all-groups", "--all-extras", "--extra", "--only-dev", "--dev", "--only-group"):
            assert flag not in argv, f"{tag}: {argv} uses {flag}"
        groups = [expand(argv[i + 1], values) for i, arg in enumerate(argv) if arg == "--group"]
        assert groups == [IMAGES[tag][1]], f"{tag}: installs groups {groups}, not {IMAGES[tag][1]}"
    # No other installer can slip packages past the lock, in any stage.
    text = " ".join(i.rest for i in of(list(dockerfile(DOCKERFILE)), "RUN"))
    assert not re.search(r"\bpip3? install\b|\buv pip\b|\buv add\b|\bconda\b", text), (
        f"{DOCKERFILE}: installs packages outside uv.lock"
    )


def test_light_targets_refuse_another_group():
    """slim, web and bot share the `light` stage, whose group is LIGHT_GROUP: each checks it is its own."""
    assert build_args()["LIGHT_GROUP"] == LIGHT_TARGETS["slim"], "the default target, slim, needs no build args"
    for target, group in LIGHT_TARGETS.items():
        chain = image_stages(target, {"LIGHT_GROUP": group})
        assert [stage.name for stage in chain] == ["light", target], chain
        guards = [run.rest for run in of(list(chain[-1].instructions), "RUN")]
        assert any(f'[ "${{LIGHT_GROUP}}" = {group} ] ||' in run and "exit 1" in run for run in guards), (
            f"target {target} builds with any LIGHT_GROUP"
        )


def test_slim_is_the_default_target():
    assert next(reversed(stages())) == "slim", "the last stage (the default target) must stay `slim`"


def test_api_group_is_a_build_arg_of_the_two_lockable_api_groups():
    args = build_args()
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
    api_base = build_args()["BASE_IMAGE"]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", api_base), api_base
    python_base = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(rf"python:{re.escape(PYTHON)}-slim(-\w+)?", python_base), python_base
    for tag, (target, args) in built_images().items():
        base = image_stages(target, args)[0].base
        if target == "full":
            assert base == "${BASE_IMAGE}", f"{tag}: FROM {base}"
        else:
            assert base == "${PYTHON_IMAGE}", f"{tag}: FROM {base}"
            assert env_vars(image(target, args)).get("UV_PYTHON_DOWNLOADS") == "never", (
                f"{tag} must use the base's Python"
            )
    # The slim CPU API has no torch; the export stage that feeds it does.
    slim = group_closure("api-slim")
    assert {"onnxruntime", "faiss-cpu", "fastapi", "uvicorn"} <= slim, slim
    assert not sorted(name for name in slim if re.match(r"^(torch|torchvision|timm|nvidia-.*|faiss-gpu)$", name))


@pytest.mark.parametrize("tag", sorted(IMAGES))
def test_runs_as_non_root_with_a_healthcheck(tag):
    service = IMAGES[tag][0]
    instructions = image(*built_images()[tag])
    users = of(instructions, "USER")
    assert users, f"{tag}: runs as root"
    user = users[-1].rest.split(":")[0]
    assert user not in ("root", "0"), f"{tag}: USER {users[-1].rest}"
    created = " ".join(run.rest for run in of(instructions, "RUN"))
    assert re.search(rf"useradd\b[^&]*--uid {user}\b", created), f"{tag}: user {user} is never created"
    cmd = of(instructions, "CMD")[-1]
    assert users[-1].line < cmd.line
    options, probe = healthcheck(instructions)
    assert probe[0] == "python", f"{tag}: the slim images have no curl; probe with python"
    exposed = [i.rest for i in of(instructions, "EXPOSE")]
    if service != "bot":  # the bot's probe is the API it talks to; the others probe themselves
        assert any(f"127.0.0.1:{port}/" in " ".join(probe) for port in exposed), (
            f"{tag}: healthcheck misses EXPOSE {exposed}"
        )
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert exec_form(cmd.rest), f"{tag}: CMD must use the exec form (signals reach the process)"


def test_copies_only_what_the_build_context_keeps():
    for copy in of(list(dockerfile(DOCKERFILE)), "COPY"):
        if copy_from(copy):
            continue
        *sources, _destination = copy.rest.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{DOCKERFILE}: COPY {source}: no such file"
            assert in_build_context(source), f"{DOCKERFILE}: COPY {source}, but .dockerignore drops it"
    for run in of(list(dockerfile(DOCKERFILE)), "RUN"):
        for source in re.findall(r"type=bind,source=([^,\s]+)", run.rest):
            assert in_build_context(source), f"{DOCKERFILE}: bind-mounts {source}, but .dockerignore drops it"


@pytest.mark.parametrize("tag", sorted(IMAGES))
def test_each_image_has_its_service_and_only_its_own_folders(tag):
    service = IMAGES[tag][0]
    target, args = built_images()[tag]
    copied = copied_sources(target, args)
    assert {service, "pyproject.toml", "uv.lock"} <= copied, f"{tag}: copies {sorted(copied)}"
    if service == "api":
        # The image runs the `landmarks` command: its package and the command line are in it.
        assert exec_form(of(image(target, args), "CMD")[-1].rest)[0] == "landmarks"
        assert {"landmarks", "cli", "api"} <= copied, f"{tag}: runs `landmarks` without {sorted(copied)}"
        assert not copied & {"client", "web", "bot"}, f"{tag}: copies {sorted(copied)}"
    else:  # bot and web reach the API through the shared client package, and need no engine
        assert "client" in copied
        assert not copied & (SOURCE_PACKAGES - {service, "client"}), f"{tag}: copies {sorted(copied)}"


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
