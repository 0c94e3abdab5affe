"""Cross-cutting behaviour: Telegram flood-control retries and per-user fairness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.texts import language, t

log = logging.getLogger(__name__)


class RetryAfterMiddleware(BaseRequestMiddleware):
    """Waits out Telegram's 429 "retry after N seconds" and sends the request again.

    aiogram raises TelegramRetryAfter and leaves the retry to us. A delay longer than `max_wait`
    is not worth holding a user's answer for, so the error then propagates.
    """

    def __init__(self, attempts: int, max_wait: float) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        retries = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if retries == self.attempts or error.retry_after > self.max_wait:
                    raise
                retries += 1
                log.warning(
                    "telegram flood control",
                    extra={"method": method.__api_method__, "retry_after": error.retry_after, "retry": retries},
                )
                await asyncio.sleep(error.retry_after)


@dataclass
class _UserSlot:
    semaphore: asyncio.Semaphore
    pending: int = 0
    told_busy: bool = False


class UserQueueMiddleware(BaseMiddleware):
    """Per-user queue for the handlers flagged `user_queue` (those that run a search).

    One instance is registered on every observer with such handlers, so they share the queue. Each user has `concurrency` searches in flight and at most `queue` pending in all; the rest of
    a burst is dropped with one "busy" notice. Other users' searches never wait behind this queue.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self._slots: dict[int, _UserSlot] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if user is None or not get_flag(data, "user_queue"):
            return await handler(event, data)
        slot = self._slots.get(user.id)
        if slot is None:
            slot = self._slots[user.id] = _UserSlot(asyncio.Semaphore(self.concurrency))
        if slot.pending >= self.queue:
            log.info("user queue full, update dropped", extra={"user_id": user.id})
            if not slot.told_busy:
                slot.told_busy = True
                await _tell_busy(event, language(user))
            return None
        slot.pending += 1
        try:
            async with slot.semaphore:
                return await handler(event, data)
        finally:
            slot.pending -= 1
            if slot.pending == 0:
                del self._slots[user.id]


async def _tell_busy(event: TelegramObject, lang: str) -> None:
    # Message.answer sends a chat message; CallbackQuery.answer shows a toast over the button.
    if isinstance(event, (Message, CallbackQuery)):
        await event.answer(t("busy", lang))
