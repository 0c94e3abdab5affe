"""Builds the Bot and the Dispatcher from settings, and runs them by polling or webhook."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.config import Settings
from bot.middlewares import RetryAfterMiddleware, UserQueueMiddleware
from bot.routers import callbacks, errors, fallback, location, search, start
from bot.routers import settings as settings_router
from bot.storage import Store
from bot.texts import EN, RU, t
from client import AsyncLandmarksClient

log = logging.getLogger(__name__)


def create_bot_and_dispatcher(settings: Settings) -> tuple[Bot, Dispatcher]:
    server = TelegramAPIServer.from_base(settings.telegram_api_base) if settings.telegram_api_base else PRODUCTION
    session = AiohttpSession(api=server)
    session.middleware(RetryAfterMiddleware(settings.retry_attempts, settings.retry_max_wait))
    bot = Bot(settings.token, session=session)

    api = AsyncLandmarksClient(settings.api_url, settings.api_timeout, max_concurrent_searches=settings.api_concurrency)
    store = Store(settings.db_path, settings.default_k)
    # Workflow data: handlers receive these by parameter name.
    dp = Dispatcher(settings=settings, api=api, store=store)
    user_queue = UserQueueMiddleware(settings.user_concurrency, settings.user_queue)
    dp.include_routers(
        start.create_router(),
        settings_router.create_router(),
        search.create_router(user_queue),
        location.create_router(),
        callbacks.create_router(user_queue),
        errors.create_router(),
        fallback.create_router(),  # last: it answers every message nobody else took
    )

    async def on_startup(bot: Bot) -> None:
        await store.init()
        await _set_commands(bot)

    async def on_shutdown() -> None:
        await api.aclose()

    dp.startup.register(on_startup)
    dp.shutdown.register(on_shutdown)
    return bot, dp


async def _set_commands(bot: Bot) -> None:
    """The command menu in the user's language; cosmetic, so a failure must not stop the bot."""
    try:
        for lang in (EN, RU):
            commands = [BotCommand(command=name, description=t(f"cmd_{name}", lang)) for name in ("start", "help", "k")]
            await bot.set_my_commands(commands, language_code=None if lang == EN else lang)
    except TelegramAPIError as error:
        log.warning("could not set the command menu", extra={"error": str(error)})


async def serve(bot: Bot, dp: Dispatcher, settings: Settings, *, handle_signals: bool = True) -> None:
    if settings.webhook_url:
        await _serve_webhook(bot, dp, settings)
        return
    # A webhook left from an earlier deployment would make getUpdates fail with 409 Conflict.
    await bot.delete_webhook()
    await dp.start_polling(bot, polling_timeout=settings.polling_timeout, handle_signals=handle_signals)


async def _serve_webhook(bot: Bot, dp: Dispatcher, settings: Settings) -> None:
    """Serves until cancelled; Telegram delivers updates to settings.webhook_url."""
    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token=settings.webhook_secret).register(app, path=settings.webhook_path)
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.webhook_host, settings.webhook_port).start()
        await bot.set_webhook(
            settings.webhook_url,
            secret_token=settings.webhook_secret,
            allowed_updates=dp.resolve_used_update_types(),
        )
        log.info("webhook server listening", extra={"host": settings.webhook_host, "port": settings.webhook_port})
        await asyncio.Event().wait()
    finally:
        # Runs the dispatcher's shutdown and closes the bot session.
        await runner.cleanup()
