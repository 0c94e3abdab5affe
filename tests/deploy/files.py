"""Readers for the deployment files, for static checks: compose YAML, Dockerfiles, .dockerignore, uv.lock.

Nothing here needs Docker: the machines that run the tests have no Docker engine.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from tests.support import REPO_ROOT

ROOT_COMPOSE = REPO_ROOT / "docker-compose.yml"
CPU_OVERRIDE = REPO_ROOT / "docker-compose.cpu.yml"
# service -> its own compose file, for running it alone
SERVICE_COMPOSE = {
    "api": REPO_ROOT / "api" / "docker-compose.yml",
    "web": REPO_ROOT / "web" / "docker-compose.yml",
    "bot": REPO_ROOT / "bot" / "docker-compose.yml",
}
DOCKERFILES = {name: REPO_ROOT / name / "Dockerfile" for name in ("api", "web", "bot")}


# --- compose ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reset:
    """Compose's `!reset` tag: drop what the files before this one set."""

    value: object


class ComposeLoader(yaml.SafeLoader):
    pass


def _untagged(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset(_untagged(loader, node)))
ComposeLoader.add_constructor("!override", _untagged)


@cache
def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=ComposeLoader)


def load_compose(path: Path) -> dict:
    return _load(Path(path))


_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR:-default}`, with the variables unset unless given."""
    env = env or {}
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def resolve(compose_file: Path, relative: str) -> Path:
    """A path in a compose file, as compose resolves it: from the file's folder."""
    return (Path(compose_file).parent / relative).resolve()


def env_files(compose_file: Path, service: dict) -> list[tuple[Path, bool]]:
    entries = service.get("env_file") or []
    if isinstance(entries, str):
        entries = [entries]
    out = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((resolve(compose_file, entry), True))
        else:
            out.append((resolve(compose_file, entry["path"]), entry.get("required", True)))
    return out


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: None if value is None else str(value) for key, value in env.items()}


@dataclass(frozen=True)
class PortMapping:
    published: int
    target: int


def ports(service: dict) -> list[PortMapping]:
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append(PortMapping(int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        out.append(PortMapping(int(parts[-2]), int(parts[-1])))
    return out


@dataclass(frozen=True)
class Mount:
    kind: str  # "bind" or "volume"
    source: str  # resolved host path for a bind, the volume name otherwise
    target: str


def mounts(compose_file: Path, service: dict) -> list[Mount]:
    out = []
    for entry in service.get("volumes") or []:
        source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/")):
            out.append(Mount("bind", str(resolve(compose_file, source)), target))
        else:
            out.append(Mount("volume", source, target))
    return out


def build_paths(compose_file: Path, service: dict) -> tuple[Path, Path]:
    """(context, Dockerfile), both resolved."""
    build = service["build"]
    context = resolve(compose_file, build["context"] if isinstance(build, dict) else build)
    dockerfile = (
        (context / build.get("dockerfile", "Dockerfile")).resolve()
        if isinstance(build, dict)
        else context / "Dockerfile"
    )
    return context, dockerfile


def healthcheck_argv(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    return list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]


def gpu_devices(service: dict) -> list[dict]:
    deploy = service.get("deploy") or {}
    if isinstance(deploy, Reset):
        return []
    return ((deploy.get("resources") or {}).get("reservations") or {}).get("devices") or []


# --- Dockerfiles -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str
    rest: str
    line: int


@cache
def dockerfile(path: Path) -> tuple[Instruction, ...]:
    """The instructions of a Dockerfile, continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines, also inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, rest = text.partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
    assert not pending, f"{path}: a continued line runs off the end"
    return tuple(out)


def instructions(path: Path, keyword: str) -> list[Instruction]:
    return [i for i in dockerfile(path) if i.keyword == keyword]


def build_args(path: Path) -> dict[str, str | None]:
    """ARG defaults, wherever they are declared (before or after FROM)."""
    out: dict[str, str | None] = {}
    for instruction in instructions(path, "ARG"):
        name, sep, default = instruction.rest.partition("=")
        out[name.strip()] = default.strip().strip('"') if sep else None
    return out


def env_vars(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for instruction in instructions(path, "ENV"):
        for token in shlex.split(instruction.rest):
            key, _, value = token.partition("=")
            out[key] = value
    return out


def exec_form(rest: str) -> list[str]:
    """The JSON (exec) form of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
    import json

    return json.loads(rest)


def healthcheck(path: Path) -> tuple[dict[str, str], list[str]]:
    """(options, argv) of the HEALTHCHECK of the Dockerfile's shipped (last) stage."""
    (check,) = [i for i in final_stage(path) if i.keyword == "HEALTHCHECK"]
    options, _, command = check.rest.partition(" CMD ")
    opts = dict(token[2:].split("=", 1) for token in options.split())
    return opts, exec_form(command.strip())


def final_stage(path: Path) -> list[Instruction]:
    """The instructions of the last build stage (the image that ships)."""
    all_ = dockerfile(path)
    last_from = max(index for index, i in enumerate(all_) if i.keyword == "FROM")
    return list(all_[last_from:])


def uv_sync_commands(path: Path) -> list[list[str]]:
    """Every `uv sync ...` invocation in the RUN instructions, as argv lists."""
    out = []
    for run in instructions(path, "RUN"):
        # Drop BuildKit --mount/--network flags, then split the shell command on && and ;.
        command = re.sub(r"^(--\w+=\S+\s+)+", "", run.rest)
        for part in re.split(r"&&|;|\|\|", command):
            argv = shlex.split(part)
            if argv[:2] == ["uv", "sync"]:
                out.append(argv)
    return out


# --- .dockerignore ---------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern:
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@cache
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern], ...]:
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line[1:] if negated else line)))
    return tuple(rules)


def in_build_context(relative: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders wins."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def checkout_files() -> list[str]:
    """The files of this checkout that git knows or would add: what a fresh clone could hold."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listing.split("\0") if name and (REPO_ROOT / name).is_file()]


# --- uv.lock ---------------------------------------------------------------------------------------
@cache
def lock() -> dict:
    with (REPO_ROOT / "uv.lock").open("rb") as handle:
        return tomllib.load(handle)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def group_closure(group: str) -> set[str]:
    """Every package a dependency group installs, transitively, as uv.lock records it.

    Markers are ignored (every platform's dependencies count), so the set is a superset of what
    any one image installs: right for checking what a group must never pull in.
    """
    packages: dict[str, list[dict]] = {}
    for package in lock()["package"]:
        packages.setdefault(_normalize(package["name"]), []).append(package)
    (project,) = [p for entries in packages.values() for p in entries if p.get("source", {}).get("editable") == "."]
    groups = project.get("dev-dependencies", {})
    assert group in groups, f"uv.lock has no group {group!r} (groups: {sorted(groups)})"
    seen: set[str] = set()
    todo = [(dep["name"], tuple(dep.get("extra", ()))) for dep in groups[group]]
    while todo:
        name, extras = todo.pop()
        name = _normalize(name)
        key_extras = [f"{name}[{extra}]" for extra in extras]
        if name in seen and all(key in seen for key in key_extras):
            continue
        seen.add(name)
        seen.update(key_extras)
        for package in packages[name]:
            deps = list(package.get("dependencies", []))
            for extra in extras:
                deps += package.get("optional-dependencies", {}).get(extra, [])
            todo += [(dep["name"], tuple(dep.get("extra", ()))) for dep in deps]
    return {name for name in seen if "[" not in name}
