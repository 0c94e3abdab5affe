"""Whatever no other router took: text, stickers, non-image files and the like get a short hint."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from bot.config import Settings
from bot.routers.start import help_text
from bot.storage import Store
from bot.texts import language, t


async def on_sticker(message: Message) -> None:
    await message.answer(t("sticker", language(message.from_user)))


async def on_document(message: Message, store: Store, settings: Settings) -> None:
    hint = t("not_an_image", language(message.from_user))
    await message.answer(f"{hint}\n\n{await help_text(message, store, settings)}")


async def on_anything(message: Message, store: Store, settings: Settings) -> None:
    await message.answer(await help_text(message, store, settings))


def create_router() -> Router:
    # Include this router last: its final handler matches every message.
    router = Router(name="fallback")
    router.message.register(on_sticker, F.sticker)
    router.message.register(on_document, F.document)
    router.message.register(on_anything)
    return router
