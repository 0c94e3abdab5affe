"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.config import Settings
from bot.storage import Store
from bot.texts import language, t


async def help_text(message: Message, store: Store, settings: Settings) -> str:
    k = await store.get_k(message.from_user.id) if message.from_user else settings.default_k
    return t("help", language(message.from_user), k=k, max_mb=settings.max_image_mb)


async def on_start(message: Message, store: Store, settings: Settings) -> None:
    name = message.from_user.first_name if message.from_user else ""
    greeting = t("greeting", language(message.from_user), name=name)
    await message.answer(f"{greeting}\n\n{await help_text(message, store, settings)}")


async def on_help(message: Message, store: Store, settings: Settings) -> None:
    await message.answer(await help_text(message, store, settings))


def create_router() -> Router:
    router = Router(name="start")
    router.message.register(on_start, CommandStart())
    router.message.register(on_help, Command("help"))
    return router
