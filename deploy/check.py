"""The deploy check: the README's Docker commands, run for real, then the stack checked from outside.

    uv run python -m deploy.check          (as root: it may install docker.io and start dockerd)

1. deploy/prepare.sh: the engine, the Compose/buildx plugins and, where no registry answers, local
   stand-ins for the base images (each skipped where already there).
2. A static preflight of the compose files (healthchecks probe the port their service listens on), so a
   broken file fails in a second with the service's name instead of after a build.
3. `docker compose -f docker-compose.yml -f docker-compose.cpu.yml build` (COMPOSE_PROFILES=jobs,bot),
   the host's CA bundle passed as the `ca_bundle` build secret.
4. ./data: a temporary gallery of dev photos in ./data/gallery (6 landmarks x 8 photos, copied from
   ../shared/data/landmarks-dev); ./data/gallery, ./data/index and ./data/cache are created by the check
   and removed at the end (an existing ./data/gallery or ./data/index is refused, never overwritten).
   `docker compose run --rm index`, then `up -d`, waiting on the healthchecks.
5. Checks: POST /search on the published port names the landmark of held-out photos; the web container
   answers on 8501 and a search from its page (Debian's Chromium, driven by Playwright) shows the
   landmark; the bot container (`--profile bot`), pointed with TELEGRAM_API_BASE at a fake Bot API
   server (deploy/fake_telegram.py) listening on the compose network's gateway only, answers a photo
   with an album; the slim API gives the full image's answers; the containers run as uid 1000; the
   web and bot images have no torch; `restart api` keeps the index; `down` leaves ./data intact.
   Image sizes and build/start times are printed.

Every wait is bounded and names the service it waited on. Containers and networks are removed at the
end (images and build cache stay, for a warm rerun).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.server import wait_for_ok
from deploy import browser
from deploy.fake_telegram import TOKEN, FakeTelegram, TgUser

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "landmarks-dev"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cpu.yml")
COMPOSE = ["docker", "compose", "-f", COMPOSE_FILES[0], "-f", COMPOSE_FILES[1]]
GALLERY = ("taj_mahal", "charminar", "gateway_of_india", "ellora_caves", "fatehpur_sikri", "alai_minar")
PER_LANDMARK = 8  # photos 000..007 in the gallery; 009 of each is a held-out query
HELD_OUT = "009.jpg"
API, WEB = "http://127.0.0.1:8000", "http://127.0.0.1:8501"
FULL_PORT = 18000  # the full (torch) image, served beside the slim one to compare answers
HEALTH_TIMEOUT = 300
UID = "1000"
RUN_DIRS = ("gallery", "index", "cache")  # what the check creates under ./data, and removes
NETWORK = "landmark-search_default"  # the compose project's network (`name: landmark-search`)
BOT_ANSWER_TIMEOUT = 180


class CheckFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"[deploy.check] {message}", flush=True)


def run(args: list[str], what: str, timeout: float = 600, env: dict | None = None, capture: bool = True) -> str:
    """Run a command in the repo; a failure or time-out raises CheckFailed naming `what`."""
    try:
        done = subprocess.run(
            args,
            cwd=REPO,
            timeout=timeout,
            text=True,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{what}: no result within {timeout:.0f} s ({' '.join(args)})") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout or "").splitlines()[-30:])
        raise CheckFailed(f"{what}: `{' '.join(args)}` exited {done.returncode}\n{tail}")
    return done.stdout or ""


# --- static preflight (no Docker needed) -------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def merged_services(files: list[Path]) -> dict[str, dict]:
    """The services of compose files merged in order, as far as the preflight needs (a shallow merge)."""
    services: dict[str, dict] = {}
    for path in files:
        for name, service in (yaml.load(path.read_text(), Loader=_Loader).get("services") or {}).items():
            services.setdefault(name, {}).update(service or {})
    return services


def listening_ports(service: dict) -> set[int]:
    """The container ports a service listens on: its published targets and its command's --port."""
    ports = set()
    for entry in service.get("ports") or []:
        target = entry.get("target") if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1].split("/")[0]
        ports.add(int(target))
    command = service.get("command") or []
    if "--port" in command:
        ports.add(int(command[command.index("--port") + 1]))
    for key, value in (service.get("environment") or {}).items():
        if key.endswith("_SERVER_PORT"):
            ports.add(int(value))
    return ports


def preflight(files: list[Path]) -> None:
    """Each self-probing healthcheck must target the port its service listens on."""
    problems = []
    for name, service in merged_services(files).items():
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))
        ports = listening_ports(service)
        for probed in map(int, re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", test)):
            if ports and probed not in ports:
                problems.append(
                    f"service {name!r}: its healthcheck probes port {probed}, but the service listens on "
                    f"{', '.join(map(str, sorted(ports)))}, so it can never turn healthy"
                )
    if problems:
        raise CheckFailed("compose preflight failed:\n  " + "\n  ".join(problems))


# --- waiting on the stack -----------------------------------------------------------------------------


def compose_ps() -> list[dict]:
    out = run([*COMPOSE, "ps", "--all", "--format", "json"], "docker compose ps", timeout=60).strip()
    # Compose 2.26 prints one JSON object a line; older ones a JSON list.
    return json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line.strip()]


def health_log(container: str) -> str:
    try:
        out = run(["docker", "inspect", "--format", "{{json .State.Health}}", container], "docker inspect", timeout=30)
        logs = (json.loads(out) or {}).get("Log") or []
        return (logs[-1].get("Output") or "").strip()[-400:] if logs else ""
    except (CheckFailed, ValueError):
        return ""


def wait_healthy(
    services: list[str],
    timeout: float = HEALTH_TIMEOUT,
    ps: Callable[[], list[dict]] = compose_ps,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], str] = health_log,
) -> float:
    """Seconds until every service's container is healthy; else CheckFailed naming the services that are not."""
    start = clock()
    while True:
        states = {row.get("Service"): row for row in ps()}
        pending = {}
        for name in services:
            row = states.get(name)
            if row is None:
                pending[name] = "no container"
            elif row.get("State") != "running":
                pending[name] = f"state {row.get('State')} ({row.get('Status', '')})"
            elif row.get("Health") != "healthy":
                pending[name] = f"health {row.get('Health') or 'none'}"
        if not pending:
            return clock() - start
        if clock() - start > timeout or any(
            s.startswith("state exited") or s == "health unhealthy" for s in pending.values()
        ):
            details = []
            for name, state in pending.items():
                row = states.get(name) or {}
                last = log(row["Name"]) if row.get("Name") else ""
                details.append(f"service {name!r}: {state}" + (f"; last healthcheck: {last}" if last else ""))
            raise CheckFailed(f"not healthy after {clock() - start:.0f} s:\n  " + "\n  ".join(details))
        sleep(3)


# --- the checks -------------------------------------------------------------------------------------


def post_photo(base: str, path: Path) -> dict:
    with path.open("rb") as handle:
        response = httpx.post(
            f"{base}/search", params={"k": 5}, files={"image": (path.name, handle, "image/jpeg")}, timeout=120
        )
    if response.status_code != 200:
        raise CheckFailed(
            f"service 'api' ({base}): POST /search answered {response.status_code}: {response.text[:300]}"
        )
    return response.json()


def answers(base: str) -> dict[str, tuple[str | None, list]]:
    out = {}
    for landmark in GALLERY:
        body = post_photo(base, DEV / "images" / landmark / HELD_OUT)
        top = (body.get("landmark") or {}).get("landmark_id")
        out[landmark] = (top, [(m["landmark_id"], round(m["score"], 4)) for m in body["matches"]])
    return out


def check_search(base: str, service: str) -> dict:
    got = answers(base)
    wrong = {photo: (top, matches[:2]) for photo, (top, matches) in got.items() if top != photo}
    if wrong:
        raise CheckFailed(f"service {service!r}: held-out photos named the wrong landmark: {wrong}")
    say(f"{service}: POST /search names {', '.join(got)} right for their held-out photos")
    return got


def container_user(service: str) -> str:
    return run([*COMPOSE, "exec", "-T", service, "id", "-u"], f"service {service!r}: id -u", timeout=60).strip()


def has_torch(image: str) -> bool:
    out = run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            image,
            "-c",
            "import importlib.util; print(importlib.util.find_spec('torch') is not None)",
        ],
        f"image {image}",
        timeout=120,
    )
    return out.strip().endswith("True")


def image_size(image: str) -> str:
    size = int(
        run(["docker", "image", "inspect", "--format", "{{.Size}}", image], f"image {image}", timeout=30).strip()
    )
    return f"{size / 1e9:.2f} GB"


@functools.cache
def landmark_name(landmark_id: str) -> str:
    with (DEV / "images" / "landmarks.csv").open(newline="") as handle:
        return next(row["name"] for row in csv.DictReader(handle) if row["landmark_id"] == landmark_id)


def check_web_page(landmark_id: str) -> int:
    """A search from the web container's page in a real browser: upload a held-out photo, read the verdict."""
    if not os.access(browser.CHROMIUM, os.X_OK):
        raise CheckFailed(
            f"service 'web': {browser.CHROMIUM} is missing, so the page cannot be driven (apt-get install chromium)"
        )
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    name = landmark_name(landmark_id)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page(viewport=browser.DESKTOP)
            photos = browser.upload_and_read_verdict(
                page, WEB, DEV / "images" / landmark_id / HELD_OUT, name, timeout_ms=120_000
            )
            return photos.count()
        except (AssertionError, PlaywrightError) as error:
            raise CheckFailed(f"service 'web': a search from the page did not show {name!r}: {error}") from None
        finally:
            chromium.close()


class TelegramOnAThread:
    """The fake Bot API server on its own event loop, driven from this synchronous check."""

    def __init__(self, host: str) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="fake-telegram", daemon=True).start()
        self.server: FakeTelegram = self.call(self._start(host), timeout=30)

    async def _start(self, host: str) -> FakeTelegram:
        server = FakeTelegram()
        await server.start(host)
        return server

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def send_photo(self, user: TgUser, data: bytes) -> None:
        async def push() -> None:
            self.server.send_photo(user, data)

        self.call(push(), timeout=10)

    def close(self) -> None:
        self.call(self.server.stop(), timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)


def network_gateway() -> str:
    out = run(
        ["docker", "network", "inspect", NETWORK, "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
        f"docker network inspect {NETWORK}",
        timeout=30,
    ).split()
    if not out:
        raise CheckFailed(f"network {NETWORK}: no gateway address to serve the fake Bot API on")
    return out[0]


def check_bot(landmark_id: str, workdir: Path) -> int:
    """The bot container against a fake Bot API on the host: a user sends a photo, an album comes back."""
    telegram = TelegramOnAThread(network_gateway())
    try:
        override = workdir / "bot-fake-telegram.yml"
        override.write_text(
            yaml.safe_dump(
                {
                    "services": {
                        "bot": {"environment": {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": telegram.server.url}}
                    }
                }
            )
        )
        run([*COMPOSE, "-f", str(override), "up", "-d", "bot"], "service 'bot': docker compose up -d bot", timeout=300)
        # Its healthcheck only says the API answers; that it is up is its first Bot API call.
        try:
            telegram.call(telegram.server.wait_call("getMe", timeout=90), timeout=100)
        except (AssertionError, TimeoutError):
            raise CheckFailed(f"service 'bot': never called the fake Bot API at {telegram.server.url}") from None
        user = TgUser(id=4242)
        telegram.send_photo(user, (DEV / "images" / landmark_id / HELD_OUT).read_bytes())
        try:
            album = telegram.call(
                telegram.server.wait_call("sendMediaGroup", chat_id=user.id, timeout=BOT_ANSWER_TIMEOUT),
                timeout=BOT_ANSWER_TIMEOUT + 10,
            )
        except (AssertionError, TimeoutError) as error:
            raise CheckFailed(f"service 'bot': no album for the user's photo: {error}") from None
        name = landmark_name(landmark_id)
        if not album.captions[0].startswith(name) or len(album.photos) < 2 or not all(album.photos):
            raise CheckFailed(f"service 'bot': the album does not lead with {name!r}: {album.captions}")
        return len(album.photos)
    finally:
        telegram.close()


def make_gallery(data: Path) -> None:
    images = DEV / "images"
    if not images.is_dir():
        raise CheckFailed(f"dev photos missing at {images} (the check reads them from ../shared/data/landmarks-dev)")
    for own in RUN_DIRS:
        if (data / own).exists():
            raise CheckFailed(
                f"{data / own} exists: the check builds its own temporary gallery and index and will not "
                "overwrite yours; move it away"
            )
    data.mkdir(exist_ok=True)
    for landmark in GALLERY:
        target = data / "gallery" / landmark
        target.mkdir(parents=True)
        for photo in sorted((images / landmark).glob("*.jpg"))[:PER_LANDMARK]:
            shutil.copy2(photo, target / photo.name)
    shutil.copy2(images / "landmarks.csv", data / "gallery" / "landmarks.csv")
    # The containers run as uid 1000 and write data/index and data/cache (main() restores ./data's owner).
    for path in [data, *(data / "gallery").rglob("*"), data / "gallery"]:
        os.chown(path, 1000, 1000)


def snapshot(data: Path) -> dict[str, int]:
    """The index's files; SQLite's -wal/-shm side files are left out: a clean shutdown folds them in."""
    return {
        str(p.relative_to(data)): p.stat().st_size
        for p in sorted(data.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def main() -> int:
    timings: dict[str, float] = {}
    data = REPO / "data"
    created = False
    owner = (data.stat().st_uid, data.stat().st_gid) if data.exists() else None
    env = {"COMPOSE_PROFILES": "jobs,bot", "LANDMARKS_CA_BUNDLE": os.environ.get("SSL_CERT_FILE", "/dev/null")}
    workdir = Path(tempfile.mkdtemp(prefix="landmarks-deploy-check-"))
    os.environ.update(env)
    try:
        preflight([REPO / f for f in COMPOSE_FILES])
        say("preflight: healthchecks probe their services' ports")
        t = time.monotonic()
        run(["bash", str(REPO / "deploy" / "prepare.sh")], "deploy/prepare.sh", timeout=900, capture=False)
        timings["prepare"] = time.monotonic() - t

        t = time.monotonic()
        run([*COMPOSE, "build"], "docker compose build", timeout=2400, capture=False)
        timings["build"] = time.monotonic() - t

        make_gallery(data)
        created = True
        t = time.monotonic()
        run(
            [*COMPOSE, "run", "--rm", "index"],
            "service 'index': docker compose run --rm index",
            timeout=900,
            capture=False,
        )
        timings["index"] = time.monotonic() - t

        t = time.monotonic()
        # The bot starts later, once the fake Bot API it is pointed at listens (it would poll api.telegram.org).
        run([*COMPOSE, "up", "-d", "api", "web"], "docker compose up -d", timeout=300, capture=False)
        wait_healthy(["api", "web"])
        timings["up until healthy"] = time.monotonic() - t
        slim = check_search(API, "api")
        web = httpx.get(WEB, timeout=30)
        if web.status_code != 200 or "streamlit" not in web.text.lower():
            raise CheckFailed(f"service 'web': {WEB} answered {web.status_code}")
        say("web: the page answers 200 on 8501")
        shown = check_web_page(GALLERY[0])
        say(f"web: a search from the page in Chromium names {landmark_name(GALLERY[0])} and shows {shown} match photos")
        t = time.monotonic()
        sent = check_bot(GALLERY[0], workdir)
        timings["bot up and answered"] = time.monotonic() - t
        say(
            f"bot: a photo sent through the fake Bot API got an album of {sent} photos led by {landmark_name(GALLERY[0])}"
        )
        for service in ("api", "web", "bot"):
            uid = container_user(service)
            if uid != UID:
                raise CheckFailed(f"service {service!r} runs as uid {uid}, not {UID}")
        say("api, web and bot run as uid 1000")
        for image in ("landmark-search-web", "landmark-search-bot", "landmark-search-api:cpu"):
            if has_torch(image):
                raise CheckFailed(f"image {image} has torch")
        say("no torch in the web, bot and slim api images")

        # The full image beside the slim one, over the same index: the same answers.
        run(["docker", "rm", "-f", "landmark-search-check-full"], "docker rm", timeout=60)
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                "landmark-search-check-full",
                "--user",
                "1000:1000",
                "-v",
                f"{data}:/app/data",
                "-p",
                f"127.0.0.1:{FULL_PORT}:8000",
                "-e",
                "LANDMARKS_DEVICE=cpu",
                "landmark-search-api:cpu-full",
            ],
            "the full api image",
            timeout=120,
        )
        if not wait_for_ok(f"http://127.0.0.1:{FULL_PORT}/ready", HEALTH_TIMEOUT, interval=3):
            raise CheckFailed(f"the full api image: not ready on port {FULL_PORT} within {HEALTH_TIMEOUT} s")
        full = check_search(f"http://127.0.0.1:{FULL_PORT}", "api (full image)")
        for photo in slim:
            if slim[photo][0] != full[photo][0] or [m for m, _ in slim[photo][1]] != [m for m, _ in full[photo][1]]:
                raise CheckFailed(f"slim and full api images disagree on {photo}: {slim[photo]} vs {full[photo]}")
        gap = max(abs(a[1] - b[1]) for p in slim for a, b in zip(slim[p][1], full[p][1], strict=False))
        say(
            f"slim == full: same landmark and the same top-5 matches for {len(slim)} held-out photos (max score gap {gap:.4f})"
        )
        run(["docker", "rm", "-f", "landmark-search-check-full"], "docker rm", timeout=60)

        before = snapshot(data / "index")
        run([*COMPOSE, "restart", "api"], "service 'api': docker compose restart api", timeout=180)
        wait_healthy(["api"])
        check_search(API, "api after restart")
        say("restart api: the index survived (the ./data volume)")

        sizes = {
            image: image_size(image)
            for image in (
                "landmark-search-api:cpu",
                "landmark-search-api:cpu-full",
                "landmark-search-web",
                "landmark-search-bot",
            )
        }
        run([*COMPOSE, "down"], "docker compose down", timeout=180)
        after = snapshot(data / "index")
        if not after or set(before) - set(after):
            raise CheckFailed(f"docker compose down lost index files: {sorted(set(before) - set(after))}")
        say("down: ./data/index intact")
        for image, size in sizes.items():
            say(f"image {image}: {size}")
        for step, seconds in timings.items():
            say(f"time {step}: {seconds:.0f} s")
        say("PASSED")
        return 0
    except CheckFailed as failure:
        print(f"[deploy.check] FAILED: {failure}", file=sys.stderr, flush=True)
        subprocess.run([*COMPOSE, "logs", "--tail", "40"], cwd=REPO, timeout=60, check=False)
        return 1
    finally:
        subprocess.run(
            ["docker", "rm", "-f", "landmark-search-check-full"], cwd=REPO, capture_output=True, timeout=60, check=False
        )
        subprocess.run(
            [*COMPOSE, "down", "--remove-orphans", "--timeout", "20"],
            cwd=REPO,
            capture_output=True,
            timeout=180,
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)
        if created:
            for own in RUN_DIRS:
                shutil.rmtree(data / own, ignore_errors=True)
            if owner:
                os.chown(data, *owner)


if __name__ == "__main__":
    sys.exit(main())
