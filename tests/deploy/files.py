"""Readers for the deployment files, for static checks: compose YAML, the Dockerfile, .dockerignore, uv.lock.

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
# The one Dockerfile: every image is a target of it.
DOCKERFILE = REPO_ROOT / "Dockerfile"


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


def build_target(service: dict, env: dict[str, str] | None = None) -> tuple[str | None, dict[str, str]]:
    """(target, build args) of a service's build, variables interpolated; no target is the last stage."""
    build = service["build"]
    if not isinstance(build, dict):
        return None, {}
    target = build.get("target")
    args = {key: interpolate(str(value), env) for key, value in (build.get("args") or {}).items()}
    return (interpolate(target, env) if target else None), args


def merge_build(service: dict, override: dict) -> dict:
    """A service with an override's build on top, as compose merges it: keys replaced, args merged."""
    build, more = dict(service["build"]), override.get("build") or {}
    args = {**(build.get("args") or {}), **(more.get("args") or {})}
    return {**service, **override, "build": {**build, **more, "args": args}}


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


@dataclass(frozen=True)
class Stage:
    name: str  # its `AS` name, or its position where it has none
    base: str  # what FROM names, variables unexpanded: an image, or an earlier stage
    instructions: tuple[Instruction, ...]  # FROM first


@cache
def stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The build stages, in order, by name."""
    grouped: list[list[Instruction]] = []
    for instruction in dockerfile(path):
        if instruction.keyword == "FROM":
            grouped.append([instruction])
        elif grouped:  # not the ARGs before the first FROM
            grouped[-1].append(instruction)
    out: dict[str, Stage] = {}
    for position, instructions in enumerate(grouped):
        words = instructions[0].rest.split()
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(position)
        out[name] = Stage(name, words[0], tuple(instructions))
    return out


def global_args(path: Path = DOCKERFILE) -> dict[str, str | None]:
    """The ARGs declared before the first FROM (the ones FROM lines can use), with their defaults."""
    out: dict[str, str | None] = {}
    for instruction in dockerfile(path):
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, sep, default = instruction.rest.partition("=")
            out[name.strip()] = default.strip().strip('"') if sep else None
    return out


def expand(text: str, args: dict[str, str | None]) -> str:
    """`${NAME}` and `$NAME` replaced by their values (as the Dockerfile's FROM lines use them)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2)) or "", text)


def image_stages(target: str | None = None, args: dict[str, str] | None = None, path: Path = DOCKERFILE) -> list[Stage]:
    """The stages an image is made of, its base image's first: `target` (no target: the last stage), the
    stage it is FROM, and so on, FROM lines resolved with the build args given over the ARG defaults."""
    values = {**global_args(path), **(args or {})}
    all_ = stages(path)
    name = target or next(reversed(all_))
    assert name in all_, f"{path}: no stage {name}"
    chain: list[Stage] = []
    while name in all_:
        chain.insert(0, all_[name])
        name = expand(all_[name].base, values)
    return chain


def image(target: str | None = None, args: dict[str, str] | None = None, path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction that makes the image of `target` built with `args`, in build order."""
    return [i for stage in image_stages(target, args, path) for i in stage.instructions]


def of(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def build_args(path: Path = DOCKERFILE) -> dict[str, str | None]:
    """ARG defaults, wherever they are declared (before or after FROM); a later default wins."""
    out: dict[str, str | None] = {}
    for instruction in of(list(dockerfile(path)), "ARG"):
        name, sep, default = instruction.rest.partition("=")
        if sep or name.strip() not in out:
            out[name.strip()] = default.strip().strip('"') if sep else None
    return out


def env_vars(instructions: list[Instruction]) -> dict[str, str]:
    out: dict[str, str] = {}
    for instruction in of(instructions, "ENV"):
        for token in shlex.split(instruction.rest):
            key, _, value = token.partition("=")
            out[key] = value
    return out


def exec_form(rest: str) -> list[str]:
    """The JSON (exec) form of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
    import json

    return json.loads(rest)


def healthcheck(instructions: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """(options, argv) of an image's HEALTHCHECK (the last one set)."""
    check = of(instructions, "HEALTHCHECK")[-1]
    options, _, command = check.rest.partition(" CMD ")
    opts = dict(token[2:].split("=", 1) for token in options.split())
    return opts, exec_form(command.strip())


def copy_from(instruction: Instruction) -> str | None:
    """The stage (or image) a COPY takes its files from, or None for the build context."""
    match = re.match(r"--from=(\S+)", instruction.rest)
    return match.group(1) if match else None


def copied_sources(target: str | None = None, args: dict[str, str] | None = None, path: Path = DOCKERFILE) -> set[str]:
    """The build-context paths an image copies: its own COPYs, and those of the context-only stages
    (FROM scratch) it copies from."""
    out: set[str] = set()
    for copy in of(image(target, args, path), "COPY"):
        source = copy_from(copy)
        if source is None:
            out.update(copy.rest.split()[:-1])
            continue
        chain = image_stages(source, args, path) if source in stages(path) else []
        if chain and chain[0].base == "scratch":
            out |= copied_sources(source, args, path)
    return out


def uv_sync_commands(instructions: list[Instruction]) -> list[list[str]]:
    """Every `uv sync ...` invocation in the RUN instructions, as argv lists."""
    out = []
    for run in of(instructions, "RUN"):
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
