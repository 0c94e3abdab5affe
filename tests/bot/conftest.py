"""Bot test fixtures: the fake Telegram Bot API server (deploy/fake_telegram.py) on loopback and a
runner for the real bot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.factory import create_bot_and_dispatcher, serve
from deploy.fake_telegram import TOKEN, FakeTelegram
from tests.support import dev_protocol


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


def make_settings(telegram: FakeTelegram, api_url: str, db_path: Path, **overrides: Any) -> Settings:
    """Settings for tests: short timeouts so that failures and shutdowns take seconds, not minutes."""
    base = Settings(
        token=TOKEN,
        api_url=api_url,
        telegram_api_base=telegram.url,
        db_path=db_path,
        api_timeout=20,
        polling_timeout=1,
        retry_max_wait=5,
        # The boxed photo is its own test (test_the_users_photo_comes_back_with_the_landmark_boxed): the
        # others answer without its second, slower search.
        photo_boxes=False,
    )
    return replace(base, **overrides)


@dataclass
class RunningBot:
    settings: Settings
    task: asyncio.Task
    stop: Callable[[], Awaitable[None]] = field(repr=False)


@pytest.fixture
async def start_bot(telegram: FakeTelegram, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningBot]]]:
    """Starts the real bot (factory + polling) in this event loop; stopped at teardown."""
    running: list[RunningBot] = []

    async def start(api_url: str, **overrides: Any) -> RunningBot:
        settings = make_settings(telegram, api_url, tmp_path / "bot.sqlite3", **overrides)
        bot, dp = create_bot_and_dispatcher(settings)
        task = asyncio.create_task(serve(bot, dp, settings, handle_signals=False))

        async def stop() -> None:
            if task.done():
                return
            if settings.webhook_url:
                task.cancel()
            else:
                await dp.stop_polling()
            await asyncio.gather(task, return_exceptions=True)

        instance = RunningBot(settings, task, stop)
        running.append(instance)
        await telegram.wait_call("getMe" if not settings.webhook_url else "setWebhook", timeout=10)
        return instance

    yield start
    for instance in running:
        await instance.stop()
        if instance.task.done() and not instance.task.cancelled() and instance.task.exception():
            raise instance.task.exception()


# --- the real API and the dev photos ----------------------------------------------------------


@pytest.fixture(scope="session")
def landmark_queries() -> list[tuple[Path, str]]:
    """The first query photo of every fifth landmark (in id order): five landmarks, spread out."""
    first: dict[str, Path] = {}
    for path, landmark_id in dev_protocol().queries:
        first.setdefault(landmark_id, path)
    return [(first[landmark_id], landmark_id) for landmark_id in sorted(first)[::5]][:5]


@pytest.fixture(scope="session")
def distractor(api_server) -> Path:
    """A distractor photo the API refuses as not showing a landmark at all (the line is the engine's business)."""
    for path in dev_protocol().distractors[:20]:
        answer = httpx.post(
            f"{api_server.url}/search", files={"image": (path.name, path.read_bytes(), "image/jpeg")}, timeout=60
        )
        answer.raise_for_status()
        if answer.json()["refusal"] == "not_a_landmark":
            return path
    raise AssertionError("the API called every one of 20 distractors a landmark")
