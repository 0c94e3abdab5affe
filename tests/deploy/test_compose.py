"""The compose files: they parse, build targets of the Dockerfile, and agree with one another and with the images.

Static checks only: no Docker engine runs where the tests run.
"""

from __future__ import annotations

import pytest

from cli import build_parser
from cli.up import DEFAULT_API_PORT, DEFAULT_WEB_PORT
from tests.deploy.files import (
    CPU_OVERRIDE,
    DOCKERFILE,
    ROOT_COMPOSE,
    SERVICE_COMPOSE,
    Reset,
    build_args,
    build_paths,
    build_target,
    env_files,
    env_vars,
    environment,
    gpu_devices,
    healthcheck,
    healthcheck_argv,
    image,
    interpolate,
    load_compose,
    merge_build,
    mounts,
    of,
    ports,
    stages,
)
from tests.support import REPO_ROOT

SERVICES = ("api", "web", "bot")
API_IMAGE_SERVICES = ("api", "index")  # the index job runs the api image
ALL_COMPOSE_FILES = [ROOT_COMPOSE, CPU_OVERRIDE, *SERVICE_COMPOSE.values()]
SERVICE_PORT = {"api": DEFAULT_API_PORT, "web": DEFAULT_WEB_PORT}
# service -> the Dockerfile target the root compose file builds for it
TARGETS = {"api": "full", "index": "full", "web": "web", "bot": "bot"}


def root() -> dict:
    return load_compose(ROOT_COMPOSE)["services"]


def alone(name: str) -> dict:
    return load_compose(SERVICE_COMPOSE[name])["services"]


def cli(argv: list[str]):
    """Parse a container command with the real `landmarks` command line."""
    assert argv[0] == "landmarks", argv
    return build_parser().parse_args([interpolate(arg) for arg in argv[1:]])


@pytest.mark.parametrize("path", ALL_COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_compose_file_parses_and_builds_targets_of_the_dockerfile(path):
    document = load_compose(path)
    assert isinstance(document, dict) and document.get("services"), f"{path}: no services"
    for name, service in document["services"].items():
        assert isinstance(service, dict), f"{path}: service {name} is not a mapping"
        if path == CPU_OVERRIDE:
            continue  # an override: its build context comes from the file it sits on
        assert "build" in service, f"{path}: service {name} has no build section"
        context, dockerfile = build_paths(path, service)
        assert context == REPO_ROOT, (
            f"{path}: {name} builds from {context}, not the repository root (uv.lock lives there)"
        )
        assert dockerfile == DOCKERFILE, f"{path}: {name} builds from {dockerfile}, not {DOCKERFILE}"
        target, _ = build_target(service)
        assert target in stages(), f"{path}: {name} builds a target the Dockerfile lacks: {target}"
    for volume in document.get("volumes") or {}:
        used = any(
            m.kind == "volume" and m.source == volume for s in document["services"].values() for m in mounts(path, s)
        )
        assert used, f"{path}: volume {volume} is declared but no service mounts it"


def test_root_compose_runs_every_service_and_the_index_job():
    services = root()
    assert set(services) == {"api", "index", "web", "bot"}
    for name, service in services.items():
        assert build_paths(ROOT_COMPOSE, service)[1] == DOCKERFILE, name
        assert build_target(service)[0] == TARGETS[name], name
    # web and bot are targets of the shared light stage: the group it installs is theirs.
    for name in ("web", "bot"):
        assert build_target(services[name])[1] == {"LIGHT_GROUP": name}, name
    # The job does not start with `docker compose up`; `docker compose run --rm index` runs it.
    assert "profiles" in services["index"] and not services["index"].get("ports")


def test_every_service_has_its_own_compose_file_matching_the_root_one():
    for name, path in SERVICE_COMPOSE.items():
        mine, theirs = alone(name)[name], root()[name]
        assert build_paths(path, mine) == build_paths(ROOT_COMPOSE, theirs), name
        assert build_target(mine) == build_target(theirs), f"{name}: target or build args differ"
        for key in ("image", "user", "command", "healthcheck", "deploy", "restart"):
            assert mine.get(key) == theirs.get(key), f"{name}: {key} differs between {path.name} and the root file"
        assert (mine.get("build") or {}).get("args") == (theirs.get("build") or {}).get("args"), name
        assert ports(mine) == ports(theirs), name
        assert mounts(path, mine) == mounts(ROOT_COMPOSE, theirs), f"{name}: volumes differ"
        assert [f for f, _ in env_files(path, mine)] == [f for f, _ in env_files(ROOT_COMPOSE, theirs)], name
        mine_env, root_env = environment(mine), environment(theirs)
        assert set(mine_env) == set(root_env), f"{name}: environment keys differ"
        for key in set(root_env) - {"LANDMARKS_API_URL"}:
            assert mine_env[key] == root_env[key], f"{name}: {key} differs"
    # The api file carries the index job too, identical to the root one.
    api_index, root_index = alone("api")["index"], root()["index"]
    assert {k: v for k, v in api_index.items() if k not in ("build", "volumes")} == {
        k: v for k, v in root_index.items() if k not in ("build", "volumes")
    }
    assert mounts(SERVICE_COMPOSE["api"], api_index) == mounts(ROOT_COMPOSE, root_index)


def test_ports_agree_with_images_commands_and_landmarks_up():
    api, web = root()["api"], root()["web"]
    # API: published = container port = `landmarks serve --port` = EXPOSE = the `landmarks up` default.
    (mapping,) = ports(api)
    serve = cli(api["command"])
    assert serve.command == "serve" and serve.host == "0.0.0.0"
    assert mapping.target == serve.port == SERVICE_PORT["api"]
    assert mapping.published == SERVICE_PORT["api"]
    assert [i.rest for i in _instructions("api", "EXPOSE")] == [str(serve.port)]
    assert _exec("api", "CMD") == api["command"], "the image's CMD and compose's command differ"
    # Web: published = container port = STREAMLIT_SERVER_PORT (forced in compose, so web.env cannot move it).
    (mapping,) = ports(web)
    assert mapping.published == mapping.target == SERVICE_PORT["web"]
    assert (
        environment(web)["STREAMLIT_SERVER_PORT"]
        == env_vars(_image("web"))["STREAMLIT_SERVER_PORT"]
        == str(mapping.target)
    )
    assert environment(web)["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    assert [i.rest for i in _instructions("web", "EXPOSE")] == [str(mapping.target)]
    # The bot polls Telegram: it publishes nothing.
    assert not ports(root()["bot"])


def test_healthchecks_probe_the_right_port_and_match_the_images():
    probes = {
        "api": f"http://127.0.0.1:{SERVICE_PORT['api']}/ready",
        "web": f"http://127.0.0.1:{SERVICE_PORT['web']}/_stcore/health",
    }
    for name in SERVICES:
        for path, service in ((ROOT_COMPOSE, root()[name]), (SERVICE_COMPOSE[name], alone(name)[name])):
            argv = healthcheck_argv(service)
            assert argv == healthcheck(_image(name))[1], f"{path}: {name}'s healthcheck differs from its image's"
            if name in probes:
                assert probes[name] in " ".join(argv), f"{path}: {name} healthcheck does not probe {probes[name]}"
            else:  # the bot checks the API it is configured with
                assert "LANDMARKS_API_URL" in " ".join(argv) and "/health" in " ".join(argv)
    # The CPU override swaps in the slim image, which probes the same way.
    assert healthcheck_argv(root()["api"]) == healthcheck(_cpu_image("api"))[1], "the slim api's healthcheck differs"
    # The API loads a model first: it gets longer to become healthy than it takes to load.
    assert _seconds(root()["api"]["healthcheck"]["start_period"]) >= 60


def test_web_and_bot_wait_for_a_healthy_api_and_reach_it_by_name():
    services = root()
    assert "healthcheck" in services["api"]
    api_url = f"http://api:{ports(services['api'])[0].target}"
    for name in ("web", "bot"):
        assert services[name]["depends_on"]["api"]["condition"] == "service_healthy", name
        assert environment(services[name])["LANDMARKS_API_URL"] == api_url, name
        assert env_vars(_image(name))["LANDMARKS_API_URL"] == api_url, f"{name} image default"
        # Run alone, they reach an API on the host unless told otherwise.
        own = alone(name)[name]
        assert (
            interpolate(environment(own)["LANDMARKS_API_URL"]) == f"http://host.docker.internal:{SERVICE_PORT['api']}"
        )
        assert interpolate(environment(own)["LANDMARKS_API_URL"], {"LANDMARKS_API_URL": "http://x:1"}) == "http://x:1"
        assert "host.docker.internal:host-gateway" in own.get("extra_hosts", [])


def test_env_files_are_the_documented_ones():
    for name in ("web", "bot"):
        for path, service in ((ROOT_COMPOSE, root()[name]), (SERVICE_COMPOSE[name], alone(name)[name])):
            files = env_files(path, service)
            assert [f for f, _ in files] == [REPO_ROOT / name / f"{name}.env"], f"{path}: {name} env_file"
        example = REPO_ROOT / name / f"{name}.env.example"
        assert example.is_file(), (
            f"{example.relative_to(REPO_ROOT)} is missing: it documents {name}'s settings for compose"
        )
        documented = example.read_text(encoding="utf-8")
        assert "LANDMARKS_API_URL" in documented, f"{example.name} does not document LANDMARKS_API_URL"
    assert "TELEGRAM_BOT_TOKEN" in (REPO_ROOT / "bot" / "bot.env.example").read_text(encoding="utf-8")
    # Optional in the full stack (the bot is behind a profile), required when the bot runs alone.
    assert all(
        not required for _, required in env_files(ROOT_COMPOSE, root()["web"]) + env_files(ROOT_COMPOSE, root()["bot"])
    )
    assert "bot" in root()["bot"].get("profiles", [])
    # The env files hold secrets: git must ignore them.
    import subprocess

    for name in ("web", "bot"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"{name}/{name}.env"], cwd=REPO_ROOT).returncode == 0
        assert ignored, f"{name}/{name}.env (a copy of the example, with secrets) is not git-ignored"


def test_data_volume_holds_gallery_index_and_checkpoints():
    services = root()
    index_dir = environment(services["api"])["LANDMARKS_INDEX_DIR"]
    for image_of in (_image, _cpu_image):
        assert index_dir == env_vars(image_of("api"))["LANDMARKS_INDEX_DIR"], image_of.__name__
    for name in API_IMAGE_SERVICES:
        (data,) = [m for m in mounts(ROOT_COMPOSE, services[name]) if m.kind == "bind"]
        assert data.source == str(REPO_ROOT / "data") and data.target == "/app/data", name
        assert index_dir.startswith(data.target + "/")
    # The job writes the index the API reads, from the gallery on the same volume, with the API's model.
    job = cli(services["index"]["command"])
    assert (job.command, job.action) == ("index", "build")
    assert str(job.out) == index_dir and str(job.gallery) == "/app/data/gallery"
    assert interpolate(services["index"]["command"][services["index"]["command"].index("--model") + 1]) == interpolate(
        environment(services["api"])["LANDMARKS_MODEL"]
    )
    assert (
        services["index"]["command"][services["index"]["command"].index("--model") + 1]
        == environment(services["api"])["LANDMARKS_MODEL"]
    )
    # The bot's state lives on its own volume, where BOT_DB_PATH points.
    (state,) = mounts(ROOT_COMPOSE, services["bot"])
    db_path = environment(services["bot"])["BOT_DB_PATH"]
    assert state.kind == "volume" and db_path.rsplit("/", 1)[0] == state.target
    assert env_vars(_image("bot"))["BOT_DB_PATH"] == db_path
    assert not mounts(ROOT_COMPOSE, services["web"]), "the web page needs no data"


def test_gpu_reservation_by_default_and_a_cpu_override():
    services, override = root(), load_compose(CPU_OVERRIDE)["services"]
    assert set(override) == set(API_IMAGE_SERVICES)
    assert set(override) <= set(alone("api")), "the CPU override must also fit api/docker-compose.yml"
    for name in API_IMAGE_SERVICES:
        (device,) = gpu_devices(services[name])
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        assert services[name]["build"]["args"]["UV_GROUP"] == "api-gpu"
        assert services[name]["build"]["args"]["BASE_IMAGE"] == build_args()["BASE_IMAGE"], (
            "compose and the Dockerfile name different CUDA bases"
        )
        cpu = override[name]
        assert isinstance(cpu["deploy"], Reset), f"the CPU override must drop {name}'s GPU reservation with !reset"
        assert cpu["build"]["args"]["UV_GROUP"] == "api"
        assert cpu["build"]["args"]["BASE_IMAGE"].startswith("python:3.11-slim")
        assert cpu["image"] != services[name]["image"], "CPU and GPU images need different tags"
    assert set(override["api"]["build"]["args"]) <= set(build_args()), "override sets an ARG the Dockerfile lacks"
    # The CPU API is the slim target, the Dockerfile's default; LANDMARKS_API_TARGET=full swaps in the torch one.
    assert build_target(override["api"])[0] == "slim" == next(reversed(stages()))
    assert build_target(override["api"], {"LANDMARKS_API_TARGET": "full"})[0] == "full"
    assert "target" not in override["index"]["build"], "the index job stays the full image"
    assert environment(override["api"]).get("LANDMARKS_DEVICE") == "cpu"
    for name in ("web", "bot"):
        assert not gpu_devices(services[name])


def test_compose_user_is_the_images_non_root_user():
    for name in API_IMAGE_SERVICES:
        user = interpolate(root()[name]["user"])
        assert user == "1000:1000", name
    for name in SERVICES:
        assert of(_image(name), "USER")[-1].rest == "1000:1000", name
    assert of(_cpu_image("api"), "USER")[-1].rest == "1000:1000", "the slim api"


def _image(name: str):
    """The instructions of the image the root compose file builds for a service."""
    return image(*build_target(root()[name]))


def _cpu_image(name: str):
    """The same with the CPU override on top (api: the slim target)."""
    cpu = load_compose(CPU_OVERRIDE)["services"][name]
    return image(*build_target(merge_build(root()[name], cpu)))


def _instructions(name: str, keyword: str):
    return of(_image(name), keyword)


def _exec(name: str, keyword: str) -> list[str]:
    from tests.deploy.files import exec_form

    return exec_form(_instructions(name, keyword)[-1].rest)


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]
