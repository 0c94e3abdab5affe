"""A location the user shares stands in for the GPS that Telegram strips from their photos."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from bot.storage import Store
from bot.texts import language, t


async def on_location(message: Message, store: Store) -> None:
    await store.set_near(message.from_user.id, message.location.latitude, message.location.longitude)
    await message.answer(t("location_saved", language(message.from_user)))


def create_router() -> Router:
    router = Router(name="location")
    router.message.register(on_location, F.location)
    return router
