"""A photo, or an image sent as a file, starts a search."""

from __future__ import annotations

from pathlib import PurePath

from aiogram import Bot, F, Router
from aiogram.types import Document, Message

from bot.config import Settings
from bot.middlewares import UserQueueMiddleware
from bot.results import search_and_answer
from bot.storage import SearchRecord, Store
from bot.texts import language, t
from client import AsyncLandmarksClient

# What the API accepts (docs/api.md); HEIC is what iPhones send when a photo goes as a file.
IMAGE_TYPES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/heif": ".heif",
}
IMAGE_SUFFIXES = {suffix: mime for mime, suffix in IMAGE_TYPES.items()} | {".jpeg": "image/jpeg"}
# Clients send these when they do not know the type; the file name then decides.
GENERIC_TYPES = {None, "", "application/octet-stream"}


def image_type(document: Document) -> str | None:
    """The MIME type to send to the API, or None when the document is not a searchable image."""
    if document.mime_type in IMAGE_TYPES:
        return document.mime_type
    suffix = PurePath(document.file_name or "").suffix.lower()
    if document.mime_type in GENERIC_TYPES and suffix in IMAGE_SUFFIXES:
        return IMAGE_SUFFIXES[suffix]
    return None


async def is_image_document(message: Message) -> bool:
    return message.document is not None and image_type(message.document) is not None


async def on_photo(message: Message, bot: Bot, api: AsyncLandmarksClient, store: Store, settings: Settings) -> None:
    # Telegram lists the sizes of a photo smallest first.
    photo = message.photo[-1]
    await _search(message, bot, api, store, settings, photo.file_id, "photo.jpg", "image/jpeg")


async def on_image_document(
    message: Message, bot: Bot, api: AsyncLandmarksClient, store: Store, settings: Settings
) -> None:
    document = message.document
    lang = language(message.from_user)
    if document.file_size is not None and document.file_size > settings.max_image_bytes:
        await message.answer(t("too_large", lang, max_mb=settings.max_image_mb))
        return
    mime_type = image_type(document)
    filename = document.file_name or f"image{IMAGE_TYPES.get(mime_type, '')}"
    await _search(message, bot, api, store, settings, document.file_id, filename, mime_type)


async def on_other_image(message: Message) -> None:
    await message.answer(t("unsupported_image", language(message.from_user)))


async def _search(
    message: Message,
    bot: Bot,
    api: AsyncLandmarksClient,
    store: Store,
    settings: Settings,
    file_id: str,
    filename: str,
    mime_type: str,
) -> None:
    record = SearchRecord(
        chat_id=message.chat.id,
        file_id=file_id,
        filename=filename,
        mime_type=mime_type,
        page_size=await store.get_k(message.from_user.id),
        place=None,
        message_id=message.message_id,
        near=await store.get_near(message.from_user.id),
    )
    await search_and_answer(
        bot=bot,
        api=api,
        store=store,
        settings=settings,
        chat_id=message.chat.id,
        lang=language(message.from_user),
        record=record,
        page=0,
    )


def create_router(user_queue: UserQueueMiddleware) -> Router:
    router = Router(name="search")
    router.message.middleware(user_queue)
    router.message.register(on_photo, F.photo, flags={"user_queue": True})
    router.message.register(on_image_document, is_image_document, flags={"user_queue": True})
    router.message.register(on_other_image, F.document.mime_type.startswith("image/"))
    return router
