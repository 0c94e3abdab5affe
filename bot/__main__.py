"""`python -m bot`: run the Telegram bot with settings from the environment."""

from __future__ import annotations

import asyncio
import signal
import sys

from aiogram.exceptions import TelegramUnauthorizedError

from bot.config import Settings, SettingsError
from bot.factory import create_bot_and_dispatcher, serve
from bot.logs import setup_logging


async def _run(settings: Settings) -> None:
    bot, dp = create_bot_and_dispatcher(settings)
    if settings.webhook_url:
        # Polling handles SIGINT/SIGTERM itself; the webhook server stops by cancellation.
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    try:
        await serve(bot, dp, settings)
    except asyncio.CancelledError:
        pass


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"bot: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, [settings.token, settings.webhook_secret or ""])
    try:
        asyncio.run(_run(settings))
    except TelegramUnauthorizedError:
        print("bot: Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
