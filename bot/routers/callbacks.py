"""The buttons under an answer: "more results" and "show on map"."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.types import CallbackQuery

from bot.callback_data import MoreResults, ShowOnMap
from bot.config import Settings
from bot.middlewares import UserQueueMiddleware
from bot.results import search_and_answer
from bot.storage import SearchRecord, Store
from bot.texts import language, t
from client import AsyncLandmarksClient


async def _own_search(callback: CallbackQuery, store: Store, search_id: int) -> SearchRecord | None:
    """The stored search, if it exists and belongs to the chat the button is in.

    Callback data can be forged; checking the chat keeps one chat from paging through another's photo.
    """
    record = await store.get_search(search_id)
    if record is None or callback.message is None or record.chat_id != callback.message.chat.id:
        await callback.answer(t("expired", language(callback.from_user)), show_alert=True)
        return None
    return record


async def on_more(
    callback: CallbackQuery,
    callback_data: MoreResults,
    bot: Bot,
    api: AsyncLandmarksClient,
    store: Store,
    settings: Settings,
) -> None:
    record = await _own_search(callback, store, callback_data.search_id)
    if record is None:
        return
    # Answer at once so the button stops spinning; the results follow as new messages.
    await callback.answer()
    await search_and_answer(
        bot=bot,
        api=api,
        store=store,
        settings=settings,
        chat_id=record.chat_id,
        lang=language(callback.from_user),
        record=record,
        page=callback_data.page,
    )


async def on_map(callback: CallbackQuery, callback_data: ShowOnMap, bot: Bot, store: Store) -> None:
    record = await _own_search(callback, store, callback_data.search_id)
    if record is None:
        return
    await callback.answer()
    place = record.place
    if place is None:  # only a forged button: the map button is offered only with a place
        return
    # A venue shows the landmark's name on the map pin; Telegram requires a non-empty address.
    await bot.send_venue(
        record.chat_id,
        latitude=place.lat,
        longitude=place.lon,
        title=place.name,
        address=place.address or f"{place.lat:.5f}, {place.lon:.5f}",
    )


def create_router(user_queue: UserQueueMiddleware) -> Router:
    router = Router(name="callbacks")
    router.callback_query.middleware(user_queue)
    router.callback_query.register(on_more, MoreResults.filter(), flags={"user_queue": True})
    router.callback_query.register(on_map, ShowOnMap.filter())
    return router
