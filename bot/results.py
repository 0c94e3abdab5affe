"""One search from photo to answer: download, ask the API, send the album and the summary."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    ReplyParameters,
)
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.text_decorations import html_decoration

from bot.callback_data import MoreResults, OpenSettings, ShowOnMap
from bot.config import Settings
from bot.storage import Place, SearchRecord, Store
from bot.texts import t
from client import (
    MAX_K,
    ApiError,
    ApiRejected,
    ApiUnavailable,
    AsyncLandmarksClient,
    Landmark,
    Match,
    Photo,
    SearchRequest,
    SearchResult,
)
from client.drawing import boxes_to_draw, photo_with_boxes

log = logging.getLogger(__name__)
quote = html_decoration.quote
OTHER_POSSIBILITIES = 3  # runner-up landmarks named under a verdict
# The API's statuses for an image it will not read (docs/api.md), as the bot's own sentences: the
# API's detail ("cannot identify image file", "N bytes not processed") is for the log, not the user.
REJECTION_TEXT = {413: "too_large", 415: "unsupported_image"}


def caption(match: Match, result: SearchResult, lang: str) -> str:
    """A photo's caption: its landmark and place, in the user's language where the gallery has them.
    The similarity stays out of sight: the one number a person is shown is the verdict's confidence."""
    name = result.name_in(match.landmark_id, match.name, lang)
    info = result.landmark_info(match.landmark_id)
    return f"{name} · {info.place_in(lang)}" if info and info.place_in(lang) else name


def percent(confidence: float, lang: str) -> str:
    """A calibrated probability as a person reads it: never "100%", which would claim certainty, nor
    "0%", which would claim impossibility."""
    if confidence >= 0.995:
        return t("over_99", lang)
    return t("under_1", lang) if confidence < 0.005 else f"{round(confidence * 100)}%"


def possibility(item: Landmark, result: SearchResult, lang: str) -> str:
    """A runner-up's line: its name and place, and how likely it is when the API said (older APIs did not)."""
    line = f"• {named(item.landmark_id, item.name, result, lang)}"
    return line if item.confidence is None else f"{line} — {percent(item.confidence, lang)}"


def distance(km: float, lang: str) -> str:
    """ "220 m", "2.4 km", "1250 km" (in the user's units words)."""
    if km < 1:
        return t("metres", lang, n=f"{max(10, round(km * 1000, -1)):.0f}")
    return t("kilometres", lang, n=f"{km:.1f}" if km < 10 else f"{km:.0f}")


def named(landmark_id: str, name: str, result: SearchResult, lang: str, bold: bool = False) -> str:
    """HTML: a landmark's name (bold for the verdict) and, in brackets, its place."""
    shown = quote(result.name_in(landmark_id, name, lang))
    shown = f"<b>{shown}</b>" if bold else shown
    info = result.landmark_info(landmark_id)
    return f"{shown} ({quote(info.place_in(lang))})" if info and info.place_in(lang) else shown


def page_matches(result: SearchResult, page: int, page_size: int) -> list[Match]:
    """The page's slice of the API ranking; on the first page the best guess's photos lead.

    Each page is asked for with k = (page + 1) * page_size, and a larger k only extends the
    ranking, so slices of successive answers neither overlap nor skip.
    """
    matches = result.matches[page * page_size : (page + 1) * page_size]
    if page == 0 and result.landmark is not None:
        best = result.landmark.landmark_id
        matches = [m for m in matches if m.landmark_id == best] + [m for m in matches if m.landmark_id != best]
    return matches


def place_of(result: SearchResult, lang: str) -> Place | None:
    """Where the best guess is, when the gallery knows its coordinates (named in the user's language)."""
    if result.landmark is None:
        return None
    info = result.landmark_info(result.landmark.landmark_id)
    if info is None or info.lat is None or info.lon is None:
        return None
    return Place(info.name_in(lang), info.place_in(lang), info.lat, info.lon)


def summary(result: SearchResult, matches: list[Match], page: int, page_size: int, lang: str) -> str:
    """HTML text under the album: the verdict and the runner-up landmarks, or the refusal; on later
    pages, which landmarks the page's photos show."""
    if not matches:
        return quote(result.notice or t("no_more" if page else "nothing_found", lang))
    if page > 0:
        first = page * page_size + 1
        counts = Counter(result.name_in(m.landmark_id, m.name, lang) for m in matches)  # in first-seen order
        shown = ", ".join(quote(name) if n == 1 else f"{quote(name)} ×{n}" for name, n in counts.items())
        return t("page", lang, first=first, last=first + len(matches) - 1, landmarks=shown)
    if result.landmark is None:
        lines = [t("not_a_landmark" if result.not_a_landmark else "unknown_landmark", lang)]
    else:
        best = result.landmark
        lines = [
            t(
                "best_guess",
                lang,
                landmark=named(best.landmark_id, best.name, result, lang, bold=True),
                confidence=percent(best.confidence, lang),
            )
        ]
        info = result.landmark_info(best.landmark_id)
        if info is not None and info.distance_km is not None:
            # A photo sent as a file keeps its GPS; else the location the user shared stood in for it.
            key = "shared_from" if result.photo_location_source == "request" else "taken_from"
            lines.append(t(key, lang, distance=distance(info.distance_km, lang)))
        others = [item for item in result.landmarks if item.landmark_id != best.landmark_id][:OTHER_POSSIBILITIES]
        if others:
            lines += [
                "",
                t("other_possibilities", lang),
                *(possibility(item, result, lang) for item in others),
            ]
    if result.notice:
        lines.append(f"<i>{quote(result.notice)}</i>")
    return "\n".join(lines)


def keyboard(record: SearchRecord, result: SearchResult, page: int, lang: str) -> InlineKeyboardMarkup:
    shown = (page + 1) * record.page_size
    rows = []
    if shown < min(result.gallery_size, MAX_K) and len(result.matches) >= shown:
        rows.append(
            [
                InlineKeyboardButton(
                    text=t("button_more", lang),
                    callback_data=MoreResults(search_id=record.search_id, page=page + 1).pack(),
                )
            ]
        )
    if record.place is not None:
        rows.append(
            [
                InlineKeyboardButton(
                    text=t("button_map", lang), callback_data=ShowOnMap(search_id=record.search_id).pack()
                )
            ]
        )
    rows.append(
        [InlineKeyboardButton(text=t("button_k", lang, k=record.page_size), callback_data=OpenSettings().pack())]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def _gallery_photos(api: AsyncLandmarksClient, matches: list[Match], size: int) -> list[tuple[Match, bytes]]:
    """Downloads the gallery photos, because Telegram cannot reach a private API to fetch a URL.

    A photo that fails is left out; if all fail the API is as good as down.
    """
    results = await asyncio.gather(*(api.image(m.image_url, size) for m in matches), return_exceptions=True)
    photos = []
    for match, data in zip(matches, results, strict=True):
        if isinstance(data, ApiError):
            log.warning("gallery photo unavailable", extra={"image_id": match.image_id, "error": str(data)})
        elif isinstance(data, BaseException):
            raise data
        else:
            photos.append((match, data))
    if matches and not photos:
        raise ApiUnavailable("no gallery photo could be downloaded")
    return photos


async def _send_album(
    bot: Bot,
    chat_id: int,
    result: SearchResult,
    photos: list[tuple[Match, bytes]],
    lang: str,
    reply: ReplyParameters | None,
) -> None:
    media = [
        InputMediaPhoto(media=BufferedInputFile(data, filename=f"{m.image_id}.jpg"), caption=caption(m, result, lang))
        for m, data in photos
    ]
    if len(media) == 1:
        await bot.send_photo(chat_id, photo=media[0].media, caption=media[0].caption, reply_parameters=reply)
    elif media:
        await bot.send_media_group(chat_id, media=media, reply_parameters=reply)


async def _send_boxed_photo(
    bot: Bot,
    api: AsyncLandmarksClient,
    chat_id: int,
    record: SearchRecord,
    photo: bytes,
    lang: str,
    reply: ReplyParameters | None,
) -> None:
    """The user's photo back with the answered landmark's box drawn, and every other landmark found in
    it, when that points at part of the photo (a box around all of it says nothing). A second search,
    after the verdict: its crops take several times a search's time, and the verdict should not wait.
    When it fails, the user already has the answer: logged, nothing sent."""
    try:
        result = await api.search(
            SearchRequest(Photo(record.filename, photo, record.mime_type), 1, near=record.near, box=True, find_all=True)
        )
    except ApiError as error:
        log.warning("box search failed", extra={"chat_id": chat_id, "error": str(error)})
        return
    boxes = boxes_to_draw(result, lang)
    if not boxes:
        return
    boxed = await asyncio.to_thread(photo_with_boxes, photo, boxes)
    if boxed is None:
        return
    # A plain caption (no markup to escape): the answer, then the others found with their confidence.
    lines = [t("in_your_photo", lang, landmark=boxes[0][1])]
    others = result.also_found
    if others:
        shown = ", ".join(
            f"{result.name_in(d.landmark_id, d.name, lang)} ({percent(d.confidence, lang)})" for d in others
        )
        lines.append(t("also_in_your_photo", lang, landmarks=shown))
    await bot.send_photo(
        chat_id,
        photo=BufferedInputFile(boxed, filename="your-photo.jpg"),
        caption="\n".join(lines),
        reply_parameters=reply,
    )


async def search_and_answer(
    *,
    bot: Bot,
    api: AsyncLandmarksClient,
    store: Store,
    settings: Settings,
    chat_id: int,
    lang: str,
    record: SearchRecord,
    page: int,
) -> None:
    """Answers one page of a search; a new search (no search_id yet) is stored for its buttons.

    Every answer is a reply to the user's photo, so that after a burst each answer says which photo
    it belongs to (and still arrives if the user deleted the photo meanwhile).
    """
    started = time.monotonic()
    reply = None
    if record.message_id is not None:
        reply = ReplyParameters(message_id=record.message_id, allow_sending_without_reply=True)
    async with ChatActionSender.upload_photo(bot=bot, chat_id=chat_id):
        try:
            image = await bot.download(record.file_id)
        except TelegramBadRequest as error:
            # Bot API serves files up to 20 MB; anything it refuses here is, in practice, too large.
            log.info("telegram refused the file", extra={"error": error.message})
            await bot.send_message(chat_id, t("too_large", lang, max_mb=settings.max_image_mb), reply_parameters=reply)
            return
        try:
            photo = image.read()
            k = min((page + 1) * record.page_size, MAX_K)
            result = await api.search(
                SearchRequest(Photo(record.filename, photo, record.mime_type), k, near=record.near)
            )
            matches = page_matches(result, page, record.page_size)
            photos = await _gallery_photos(api, matches, settings.gallery_image_size)
        except ApiRejected as error:
            log.info("image rejected by the api", extra={"status": error.status, "detail": error.detail})
            key = REJECTION_TEXT.get(error.status, "bad_image")
            await bot.send_message(chat_id, t(key, lang, max_mb=settings.max_image_mb), reply_parameters=reply)
            return
        except ApiError as error:
            # Down, slow, still loading, busy or answering nonsense: to the user it is all "try later".
            log.warning("landmarks api unavailable", extra={"chat_id": chat_id, "error": str(error)})
            await bot.send_message(chat_id, t("api_down", lang), reply_parameters=reply)
            return
        if record.search_id is None:
            record = replace(record, place=place_of(result, lang))
            record = replace(record, search_id=await store.add_search(record))
        await _send_album(bot, chat_id, result, photos, lang, reply)
    await bot.send_message(
        chat_id,
        summary(result, matches, page, record.page_size, lang),
        parse_mode="HTML",
        reply_markup=keyboard(record, result, page, lang),
        reply_parameters=reply,
    )
    if page == 0 and result.landmark is not None and settings.photo_boxes:
        await _send_boxed_photo(bot, api, chat_id, record, photo, lang, reply)
    log.info(
        "search answered",
        extra={
            "chat_id": chat_id,
            "page": page,
            "results": len(photos),
            "landmark": result.landmark.landmark_id if result.landmark else None,
            "ms": round((time.monotonic() - started) * 1000),
        },
    )
