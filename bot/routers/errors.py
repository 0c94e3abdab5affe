"""Last resort for a handler that raised: log it, apologise, keep serving everyone else."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.types import Chat, ErrorEvent, User

from bot.texts import language, t

log = logging.getLogger(__name__)


async def on_error(
    event: ErrorEvent, bot: Bot, event_chat: Chat | None = None, event_from_user: User | None = None
) -> None:
    log.error(
        "update failed",
        exc_info=event.exception,
        extra={"update_id": event.update.update_id, "chat_id": event_chat.id if event_chat else None},
    )
    if event_chat is not None:
        await bot.send_message(event_chat.id, t("failed", language(event_from_user)))


def create_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
