"""Bot settings, read once from the environment (see `bot/bot.env.example`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from client import DEFAULT_API_URL, DEFAULT_TIMEOUT_S, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # repr=False keeps the token and the webhook secret out of logs and tracebacks.
    token: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    # Base URL of a self-hosted Bot API server; None means api.telegram.org.
    telegram_api_base: str | None = None
    db_path: Path = Path("data/bot/bot.sqlite3")
    default_k: int = 5
    max_image_bytes: int = 10 * 1024 * 1024
    api_timeout: float = DEFAULT_TIMEOUT_S
    # How many searches the bot runs against the API at once, over all users.
    api_concurrency: int = 4
    # Longest side of the gallery photos the bot asks the API for (within the API's 64..1024).
    gallery_image_size: int = 640
    # One user's photos are searched one after another (user_concurrency at a time) and at most
    # user_queue of them may wait, so a burst from one user cannot take every API slot.
    user_concurrency: int = 1
    user_queue: int = 10
    polling_timeout: int = 10
    # Telegram 429 handling: how often to retry and the longest advised delay worth waiting for.
    retry_attempts: int = 3
    retry_max_wait: float = 60.0
    log_level: str = "WARNING"
    # After the verdict, the user's photo back with the landmark's box (and any other landmark found in
    # it): a second search whose crops take several times a search's time on the API; off on a busy CPU API.
    photo_boxes: bool = True
    # Webhook mode when webhook_url is set; the local path is the path of that public URL.
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080

    @property
    def max_image_mb(self) -> str:
        return f"{self.max_image_bytes / 2**20:g}"

    @property
    def webhook_path(self) -> str:
        return urlsplit(self.webhook_url or "").path or "/"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
        if not token:
            raise SettingsError("TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its token there")
        default = cls(token=token)

        def text(name: str, fallback: str | None) -> str | None:
            value = env.get(name, "").strip()
            return value or fallback

        def number(name: str, fallback: float, kind: type, low: float, high: float):
            raw = env.get(name, "").strip()
            if not raw:
                return fallback
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number") from None
            if not low <= value <= high:
                raise SettingsError(f"{name}={raw} is outside {low}..{high}")
            return value

        api_url = text("LANDMARKS_API_URL", default.api_url)
        for name, url in (
            ("LANDMARKS_API_URL", api_url),
            ("TELEGRAM_API_BASE", env.get("TELEGRAM_API_BASE")),
            ("BOT_WEBHOOK_URL", env.get("BOT_WEBHOOK_URL")),
        ):
            if url and urlsplit(url.strip()).scheme not in ("http", "https"):
                raise SettingsError(f"{name}={url!r} must be an http(s) URL")
        log_level = text("BOT_LOG_LEVEL", default.log_level).upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"BOT_LOG_LEVEL={log_level!r} is not a logging level")
        webhook_secret = text("BOT_WEBHOOK_SECRET", None)
        if webhook_secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", webhook_secret):
            raise SettingsError("BOT_WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ and - (1 to 256 characters)")

        def flag(name: str, fallback: bool) -> bool:
            raw = env.get(name, "").strip().lower()
            if not raw:
                return fallback
            if raw not in FLAGS:
                raise SettingsError(f"{name}={raw!r} is not one of {', '.join(sorted(FLAGS))}")
            return FLAGS[raw]

        max_image_mb = number("BOT_MAX_IMAGE_MB", default.max_image_bytes / 2**20, float, 0.1, 2000)
        return cls(
            token=token,
            api_url=api_url.rstrip("/"),
            telegram_api_base=text("TELEGRAM_API_BASE", None),
            db_path=Path(text("BOT_DB_PATH", str(default.db_path))),
            default_k=number("BOT_DEFAULT_K", default.default_k, int, 1, 10),
            max_image_bytes=int(max_image_mb * 2**20),
            api_timeout=number("BOT_API_TIMEOUT", default.api_timeout, float, 0.1, 600),
            api_concurrency=number("BOT_API_CONCURRENCY", default.api_concurrency, int, 1, 100),
            gallery_image_size=number(
                "BOT_GALLERY_IMAGE_SIZE", default.gallery_image_size, int, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE
            ),
            user_concurrency=number("BOT_USER_CONCURRENCY", default.user_concurrency, int, 1, 10),
            user_queue=number("BOT_USER_QUEUE", default.user_queue, int, 1, 1000),
            polling_timeout=number("BOT_POLLING_TIMEOUT", default.polling_timeout, int, 1, 50),
            retry_attempts=number("BOT_RETRY_ATTEMPTS", default.retry_attempts, int, 0, 10),
            retry_max_wait=number("BOT_RETRY_MAX_WAIT", default.retry_max_wait, float, 0, 3600),
            log_level=log_level,
            photo_boxes=flag("BOT_PHOTO_BOXES", default.photo_boxes),
            webhook_url=text("BOT_WEBHOOK_URL", None),
            webhook_secret=webhook_secret,
            webhook_host=text("BOT_WEBHOOK_HOST", default.webhook_host),
            webhook_port=number("BOT_WEBHOOK_PORT", default.webhook_port, int, 1, 65535),
        )
