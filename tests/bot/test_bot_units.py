"""The bot's pure parts: settings, log redaction, result paging, image detection, middlewares."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.types import Document, TelegramObject, User

from bot import middlewares
from bot.config import Settings, SettingsError
from bot.logs import REDACTED, LogfmtFormatter
from bot.middlewares import RetryAfterMiddleware, UserQueueMiddleware
from bot.results import caption, keyboard, page_matches, place_of, summary
from bot.routers.search import image_type
from bot.storage import SCHEMA, SearchRecord, Store
from bot.texts import EN, RU, TEXTS, language, t
from client.contract import parse_search

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"


def contract_answer(best: str | None = "taj_mahal", n: int = 6, gallery_size: int = 540) -> dict:
    """A /search answer shaped as in docs/api.md: Humayun's Tomb outranks the best guess's photos."""
    landmarks = [
        {
            "landmark_id": "taj_mahal",
            "name": "Taj Mahal",
            "score": 0.81,
            "confidence": 0.93,
            "city": "Agra",
            "country": "India",
            "lat": 27.1751,
            "lon": 78.0421,
            "image_count": 40,
        },
        {
            "landmark_id": "humayuns_tomb",
            "name": "Humayun's Tomb",
            "score": 0.7,
            "confidence": 0.05,
            "city": None,
            "country": None,
            "lat": None,
            "lon": None,
            "image_count": 12,
        },
    ]
    ids = ["humayuns_tomb", "taj_mahal", "humayuns_tomb", "taj_mahal", "taj_mahal", "humayuns_tomb"][:n]
    matches = [
        {
            "image_id": i,
            "landmark_id": lid,
            "name": next(lm["name"] for lm in landmarks if lm["landmark_id"] == lid),
            "score": round(0.9 - i / 100, 4),
            "image_url": f"http://api:8000/gallery/{i}",
        }
        for i, lid in enumerate(ids)
    ]
    guess = {"landmark_id": best, "name": "Taj Mahal", "confidence": 0.93} if best else None
    return {"landmark": guess, "landmarks": landmarks, "matches": matches, "gallery_size": gallery_size, "notice": None}


# --- settings ---------------------------------------------------------------------------------


def test_settings_from_env_defaults_and_values():
    settings = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN})
    assert settings.api_url == "http://127.0.0.1:8000" and settings.telegram_api_base is None
    assert settings.webhook_url is None and settings.default_k == 5 and settings.log_level == "WARNING"
    assert TOKEN not in repr(settings)

    settings = Settings.from_env(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "LANDMARKS_API_URL": "http://api:8000/",
            "TELEGRAM_API_BASE": "http://tg:8081",
            "BOT_DB_PATH": "/var/lib/bot/db.sqlite3",
            "BOT_DEFAULT_K": "3",
            "BOT_MAX_IMAGE_MB": "2.5",
            "BOT_API_TIMEOUT": "4.5",
            "BOT_LOG_LEVEL": "info",
            "BOT_WEBHOOK_URL": "https://bot.example.org/tg/hook",
            "BOT_WEBHOOK_SECRET": "abc_DEF-123",
            "BOT_WEBHOOK_PORT": "9000",
            "BOT_PHOTO_BOXES": "off",
        }
    )
    assert settings.api_url == "http://api:8000" and settings.telegram_api_base == "http://tg:8081"
    assert settings.db_path == Path("/var/lib/bot/db.sqlite3") and settings.default_k == 3
    assert settings.max_image_bytes == int(2.5 * 2**20) and settings.max_image_mb == "2.5"
    assert settings.api_timeout == 4.5 and settings.log_level == "INFO"
    assert settings.webhook_path == "/tg/hook" and settings.webhook_port == 9000
    assert "abc_DEF-123" not in repr(settings)
    assert not settings.photo_boxes and Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN}).photo_boxes


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "TELEGRAM_BOT_TOKEN"),
        ({"BOT_DEFAULT_K": "11"}, "BOT_DEFAULT_K"),
        ({"BOT_API_TIMEOUT": "soon"}, "BOT_API_TIMEOUT"),
        ({"LANDMARKS_API_URL": "api:8000"}, "LANDMARKS_API_URL"),
        ({"BOT_LOG_LEVEL": "LOUD"}, "BOT_LOG_LEVEL"),
        ({"BOT_WEBHOOK_SECRET": "has space"}, "BOT_WEBHOOK_SECRET"),
        ({"BOT_PHOTO_BOXES": "maybe"}, "BOT_PHOTO_BOXES"),
    ],
)
def test_settings_errors_name_the_variable(env, names):
    if names != "TELEGRAM_BOT_TOKEN":
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, **env}
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


# --- logging ----------------------------------------------------------------------------------


def test_log_lines_are_logfmt_and_never_carry_the_token():
    formatter = LogfmtFormatter([TOKEN])
    record = logging.makeLogRecord(
        {
            "name": "bot.test",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "download failed: %s",
            "args": (f"http://tg/file/bot{TOKEN}/photo.jpg",),
            "chat_id": 42,
            "error": 'said "no"',
        }
    )
    line = formatter.format(record)
    assert TOKEN not in line and f"bot{REDACTED}/photo.jpg" in line
    assert " level=error logger=bot.test " in line and " chat_id=42 " in line and 'error="said \\"no\\""' in line
    # A token the formatter was not told about is still caught by its shape.
    other = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
    assert other not in LogfmtFormatter([]).format(logging.makeLogRecord({"msg": other}))


# --- results ----------------------------------------------------------------------------------


def test_first_page_puts_the_best_guess_first_and_later_pages_follow_the_ranking():
    result = parse_search(contract_answer())
    assert [m.image_id for m in page_matches(result, 0, 3)] == [1, 0, 2]
    assert [m.image_id for m in page_matches(result, 1, 3)] == [3, 4, 5]
    not_a_landmark = parse_search(contract_answer(best=None))
    assert [m.image_id for m in page_matches(not_a_landmark, 0, 3)] == [0, 1, 2]


def test_captions_summary_and_buttons():
    result = parse_search(contract_answer())
    taj, humayun = result.matches[1], result.matches[0]
    assert caption(taj, result, EN) == "Taj Mahal · Agra, India"
    assert caption(humayun, result, EN) == "Humayun's Tomb"
    text = summary(result, page_matches(result, 0, 2), 0, 2, EN)
    assert text.splitlines() == [
        "This looks like <b>Taj Mahal</b> (Agra, India), confidence 93%.",
        "",
        "Other possibilities:",
        "• Humayun's Tomb — 5%",
    ]
    # Names are text, not markup: the summary is sent as HTML.
    answer = contract_answer()
    answer["landmark"]["name"] = answer["landmarks"][0]["name"] = "<A & B>"
    answer["landmarks"][1]["name"] = "<C & D>"
    text = summary(parse_search(answer), page_matches(parse_search(answer), 0, 2), 0, 2, EN)
    assert "<b>&lt;A &amp; B&gt;</b>" in text and "• &lt;C &amp; D&gt; — 5%" in text
    # An API from before per-landmark confidence: the runner-up is named without a number.
    del answer["landmarks"][1]["confidence"]
    text = summary(parse_search(answer), page_matches(parse_search(answer), 0, 2), 0, 2, EN)
    assert text.splitlines()[-1] == "• &lt;C &amp; D&gt;"
    page = summary(result, page_matches(result, 1, 3), 1, 3, RU)
    assert page == "Результаты 4–6: Taj Mahal ×2, Humayun's Tomb."


def test_a_photo_with_gps_gets_its_distance_in_the_verdict():
    answer = contract_answer()
    answer["landmarks"][0]["distance_km"] = 0.2172
    answer["photo_location"] = {"lat": 27.1771, "lon": 78.0421}
    result = parse_search(answer)
    assert result.photo_location == (27.1771, 78.0421)
    lines = summary(result, page_matches(result, 0, 2), 0, 2, EN).splitlines()
    assert lines[1] == "📍 Your photo was taken 220 m from it."
    assert summary(result, page_matches(result, 0, 2), 0, 2, RU).splitlines()[1] == "📍 Ваше фото снято в 220 м от неё."
    answer["landmarks"][0]["distance_km"] = 12.4
    assert "12 km" in summary(parse_search(answer), page_matches(result, 0, 2), 0, 2, EN)
    # No EXIF (a Telegram photo): the location the user shared stood in, and the line says so.
    answer["photo_location"]["source"] = "request"
    shared = parse_search(answer)
    assert shared.photo_location_source == "request"
    assert (
        summary(shared, page_matches(shared, 0, 2), 0, 2, EN).splitlines()[1]
        == "📍 You shared a location 12 km from it."
    )


@pytest.mark.parametrize(
    ("confidence", "shown"),
    [(0.93, "93%"), (0.994, "99%"), (0.995, "over 99%"), (1.0, "over 99%"), (0.004, "under 1%")],
)
def test_confidence_is_never_shown_as_certainty(confidence, shown):
    answer = contract_answer()
    answer["landmark"]["confidence"] = confidence
    result = parse_search(answer)
    assert summary(result, page_matches(result, 0, 2), 0, 2, EN).splitlines()[0].endswith(f"confidence {shown}.")


@pytest.mark.parametrize("refusal", ["not_a_landmark", "unknown_landmark"])
def test_a_refusal_names_no_landmark_says_why_and_offers_no_map(refusal):
    answer = {**contract_answer(best=None), "refusal": refusal}
    result = parse_search(answer)
    text = summary(result, page_matches(result, 0, 2), 0, 2, RU)
    assert text == t(refusal, RU) and "%" not in text
    assert place_of(result, RU) is None
    assert t("not_a_landmark", EN) != t("unknown_landmark", EN)


def test_buttons():
    result = parse_search(contract_answer())
    place = place_of(result, EN)
    assert (place.name, place.address, place.lat, place.lon) == ("Taj Mahal", "Agra, India", 27.1751, 78.0421)
    record = SearchRecord(
        chat_id=1, file_id="f", filename="p.jpg", mime_type="image/jpeg", page_size=2, place=place, search_id=7
    )
    assert [row[0].callback_data for row in keyboard(record, result, 0, EN).inline_keyboard] == [
        "more:7:1",
        "map:7",
        "settings",
    ]
    # The last page offers no "more"; a landmark without coordinates offers no map.
    last = keyboard(record, parse_search(contract_answer(n=4, gallery_size=4)), 1, EN)
    assert [row[0].callback_data for row in last.inline_keyboard] == ["map:7", "settings"]
    assert place_of(parse_search(contract_answer(best="humayuns_tomb")), EN) is None


def test_russian_users_get_the_galleries_russian_names_where_it_has_them():
    # name_ru / city_ru / country_ru: extra metadata (landmarks.csv columns), as the API passes it on.
    answer = contract_answer()
    answer["landmarks"][0].update(name_ru="Тадж-Махал", city_ru="Агра", country_ru="Индия")
    result = parse_search(answer)
    taj, humayun = result.matches[1], result.matches[0]
    assert caption(taj, result, RU) == "Тадж-Махал · Агра, Индия"
    assert caption(taj, result, EN) == "Taj Mahal · Agra, India"
    assert caption(humayun, result, RU) == "Humayun's Tomb"  # no Russian name: the gallery's own
    assert summary(result, page_matches(result, 0, 2), 0, 2, RU).splitlines()[0] == (
        "Похоже, это <b>Тадж-Махал</b> (Агра, Индия), уверенность 93%."
    )
    assert summary(result, page_matches(result, 1, 3), 1, 3, RU) == "Результаты 4–6: Тадж-Махал ×2, Humayun's Tomb."
    place = place_of(result, RU)
    assert (place.name, place.address) == ("Тадж-Махал", "Агра, Индия")
    assert place_of(result, EN).name == "Taj Mahal"


def test_empty_gallery_answer_shows_the_notice():
    answer = {
        **contract_answer(best=None),
        "matches": [],
        "landmarks": [],
        "gallery_size": 0,
        "notice": "The gallery is empty.",
    }
    assert summary(parse_search(answer), [], 0, 5, EN) == "The gallery is empty."


# --- input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "mime_type", "expected"),
    [
        ("a.jpg", "image/jpeg", "image/jpeg"),
        ("IMG_1.HEIC", "image/heic", "image/heic"),
        ("scan.webp", None, "image/webp"),
        ("photo.JPEG", "application/octet-stream", "image/jpeg"),
        ("paper.pdf", "application/pdf", None),
        ("fake.jpg", "application/pdf", None),
        ("cat.gif", "image/gif", None),
        (None, None, None),
    ],
)
def test_image_type(file_name, mime_type, expected):
    document = Document(file_id="f", file_unique_id="u", file_name=file_name, mime_type=mime_type)
    assert image_type(document) == expected


def test_language_follows_telegram_interface_language():
    assert language(User(id=1, is_bot=False, first_name="a", language_code="ru-RU")) == RU
    assert language(User(id=1, is_bot=False, first_name="a", language_code="de")) == EN
    assert language(None) == EN
    assert all(set(versions) == {EN, RU} for versions in TEXTS.values())


async def test_store_keeps_k_and_searches(tmp_path):
    store = Store(tmp_path / "nested" / "bot.sqlite3", default_k=5)
    await store.init()
    assert await store.get_k(1) == 5
    await store.set_k(1, 3)
    await store.set_k(1, 4)
    again = Store(tmp_path / "nested" / "bot.sqlite3", default_k=5)
    assert await again.get_k(1) == 4 and await again.get_k(2) == 5
    record = SearchRecord(
        chat_id=1, file_id="f", filename="p.jpg", mime_type="image/jpeg", page_size=4, place=None, message_id=77
    )
    search_id = await again.add_search(record)
    assert await again.get_search(search_id) == SearchRecord(**{**record.__dict__, "search_id": search_id})
    assert await again.get_search(search_id + 1) is None
    near = replace(record, near=(27.17, 78.04))
    assert (await again.get_search(await again.add_search(near))).near == (27.17, 78.04)


async def test_a_shared_location_is_kept_for_an_hour_without_touching_k(tmp_path, monkeypatch):
    import bot.storage

    store = Store(tmp_path / "bot.sqlite3", default_k=5)
    await store.init()
    assert await store.get_near(1) is None
    await store.set_k(1, 3)
    await store.set_near(1, 27.17, 78.04)
    await store.set_near(2, 48.86, 2.29)  # a user who never chose k
    assert await store.get_near(1) == (27.17, 78.04) and await store.get_k(1) == 3
    assert await store.get_near(2) == (48.86, 2.29) and await store.get_k(2) == 5
    later = bot.storage.time.time() + bot.storage.SHARED_LOCATION_S + 1
    monkeypatch.setattr(bot.storage.time, "time", lambda: later)
    assert await store.get_near(1) is None  # an hour later it no longer says where the photos are taken


async def test_store_made_by_an_older_bot_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "bot.sqlite3"
    old_schema = SCHEMA.replace(",\n    message_id INTEGER", "")
    assert "message_id" not in old_schema
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO users (user_id, k) VALUES (1, 7)")
        db.execute(
            "INSERT INTO searches (chat_id, file_id, filename, mime_type, page_size, created_at)"
            " VALUES (1, 'f', 'p.jpg', 'image/jpeg', 7, ?)",
            (time.time(),),
        )
    store = Store(path, default_k=5)
    await store.init()
    await store.init()  # idempotent
    assert await store.get_k(1) == 7
    assert (await store.get_search(1)).message_id is None
    search_id = await store.add_search(
        SearchRecord(
            chat_id=1, file_id="g", filename="p.jpg", mime_type="image/jpeg", page_size=7, place=None, message_id=9
        )
    )
    assert (await store.get_search(search_id)).message_id == 9


# --- middlewares ------------------------------------------------------------------------------


async def test_retry_after_waits_the_advised_delay_then_gives_up(monkeypatch):
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(middlewares.asyncio, "sleep", fake_sleep)
    method = SendMessage(chat_id=1, text="hi")
    attempts = []

    async def flooded(bot, method):
        attempts.append(method)
        if len(attempts) < 3:
            raise TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=2)
        return "sent"

    assert await RetryAfterMiddleware(attempts=3, max_wait=5)(flooded, None, method) == "sent"
    assert slept == [2, 2] and len(attempts) == 3

    attempts.clear()
    with pytest.raises(TelegramRetryAfter):
        await RetryAfterMiddleware(attempts=1, max_wait=5)(flooded, None, method)
    assert len(attempts) == 2
    attempts.clear()
    with pytest.raises(TelegramRetryAfter):
        await RetryAfterMiddleware(attempts=3, max_wait=1)(flooded, None, method)
    assert len(attempts) == 1


async def test_user_queue_serialises_one_user_and_drops_the_overflow():
    queue = UserQueueMiddleware(concurrency=1, queue=2)
    release = asyncio.Event()
    running: dict[int, int] = {}
    peak: dict[int, int] = {}

    async def handler(event, data):
        user_id = data["event_from_user"].id
        running[user_id] = running.get(user_id, 0) + 1
        peak[user_id] = max(peak.get(user_id, 0), running[user_id])
        await release.wait()
        running[user_id] -= 1
        return user_id

    def call(user_id: int, flagged: bool = True):
        data = {"event_from_user": User(id=user_id, is_bot=False, first_name="u"), "handler": None}
        data["handler"] = type("H", (), {"flags": {"user_queue": True} if flagged else {}})()
        return asyncio.create_task(queue(handler, TelegramObject(), data))

    alice = [call(1) for _ in range(4)]
    boris = call(2)
    unflagged = call(1, flagged=False)  # e.g. "show on map": not queued behind searches
    await asyncio.sleep(0.05)
    assert running == {1: 2, 2: 1}  # Alice: one search plus the unflagged handler; Boris in parallel
    release.set()
    results = await asyncio.gather(*alice, boris, unflagged)
    assert results == [1, 1, None, None, 2, 1]
    assert peak[2] == 1 and not queue._slots
