"""End to end: the real bot polls a fake Telegram server and asks a real API over the dev photos."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bot.callback_data import MoreResults
from bot.texts import EN, RU, t
from deploy.fake_telegram import TOKEN, Call, FakeTelegram, TgUser
from tests.support import REPO_ROOT, ApiServer, free_port, landmark_names, require_dev_data

ALICE = TgUser(1001, "Alice")
BORIS = TgUser(1002, "Борис", language_code="ru")
CAROL = TgUser(1003, "Carol")


def landmark_rows() -> dict[str, dict[str, str]]:
    """The dev gallery's landmarks.csv, by landmark id."""
    with (require_dev_data() / "images" / "landmarks.csv").open(newline="", encoding="utf-8") as handle:
        return {row["landmark_id"]: row for row in csv.DictReader(handle)}


def help_body(lang: str = EN, k: int = 5) -> str:
    return t("help", lang, k=k, max_mb="10")


async def answer_since(telegram: FakeTelegram, user: TgUser, mark: int) -> tuple[Call | None, Call]:
    """The first answer after `mark`: the album (sendMediaGroup or sendPhoto, if any) and the text after it."""
    summary = await telegram.wait_call("sendMessage", chat_id=user.id, since=mark)
    albums = [
        c
        for c in telegram.calls[mark:]
        if c.ok and c.method in ("sendMediaGroup", "sendPhoto") and c.chat_id == user.id and not boxed(c)
    ]
    return (albums[-1] if albums else None), summary


def boxed(call: Call) -> bool:
    """Whether the call sends the user's own photo back with the landmark's box (after the verdict)."""
    return call.method == "sendPhoto" and call.captions[0].startswith("🔲")


def replied_to(call: Call) -> int | None:
    """The message a bot call answers (reply_parameters), if any."""
    return (call.params.get("reply_parameters") or {}).get("message_id")


async def photo_answer(telegram: FakeTelegram, user: TgUser, send) -> tuple[Call | None, Call]:
    """Sends a photo (via `send`) and returns the album and the summary the bot answers with."""
    mark = telegram.mark()
    send()
    return await answer_since(telegram, user, mark)


def as_format(path: Path, fmt: str) -> bytes:
    if fmt == "JPEG":
        return path.read_bytes()
    if fmt == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.open(path).convert("RGB").save(out, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def clear_query(api_server, landmark_queries) -> tuple[Path, str]:
    """Of the sample queries, the one the API recognises with the highest confidence."""
    best = None
    for path, landmark_id in landmark_queries:
        answer = httpx.post(
            f"{api_server.url}/search", files={"image": ("q.jpg", path.read_bytes(), "image/jpeg")}, timeout=60
        ).json()
        guess = answer["landmark"]
        if guess and guess["landmark_id"] == landmark_id and (best is None or guess["confidence"] > best[0]):
            best = (guess["confidence"], path, landmark_id)
    assert best, "the API recognised none of the sample queries"
    return best[1], best[2]


async def test_photo_yields_album_with_the_landmark_first(telegram, start_bot, api_server, landmark_queries):
    await start_bot(api_server.url)
    names = landmark_names()
    right = 0
    for path, landmark_id in landmark_queries:
        mark = telegram.mark()
        update_id = telegram.send_photo(ALICE, path.read_bytes())
        album, summary = await answer_since(telegram, ALICE, mark)
        # The user's photo went Telegram -> bot -> API; the answer is an album of gallery JPEGs.
        assert telegram.find("getFile", since=mark) and telegram.find("download", since=mark)
        action = telegram.find("sendChatAction", chat_id=ALICE.id, since=mark)[0]
        assert action.params["action"] == "upload_photo" and action.at <= album.at
        assert album.method == "sendMediaGroup" and len(album.captions) == 5
        assert all(photo[:2] == b"\xff\xd8" for photo in album.photos)
        # Album and text both reply to the user's photo; captions carry names and places, no similarity.
        photo_id = telegram.pushed[update_id]["message_id"]
        assert replied_to(album) == replied_to(summary) == photo_id
        assert album.params["reply_parameters"]["allow_sending_without_reply"] is True
        assert all(" — " not in caption and " · " in caption and "India" in caption for caption in album.captions)
        if album.captions[0].startswith(f"{names[landmark_id]} · "):
            right += 1
            assert summary.text.startswith(f"This looks like <b>{names[landmark_id]}</b> (")
            # One number per landmark: the confidence, never "100%"; then the runner-up landmarks by name,
            # each with its own (smaller) share.
            assert "100%" not in summary.text
            lines = summary.text.splitlines()
            assert lines[2] == "Other possibilities:" and 1 <= len(lines[3:]) <= 3
            assert all(line.startswith("• ") and names[landmark_id] not in line for line in lines[3:])
            assert all(re.search(r" — (under 1|\d{1,2})%$", line) for line in lines[3:]), lines
    assert right >= 3, f"only {right} of {len(landmark_queries)} queries named the right landmark first"


async def test_the_users_photo_comes_back_with_the_landmark_boxed(telegram, start_bot, api_server):
    """A dev query pasted on a photo of no landmark (one the service names: tests/api/test_region_e2e.py):
    after the verdict, the user's photo with a box drawn around the pasted landmark, as a reply to it."""
    from landmarks.search.region import iou
    from tests.api.test_region_e2e import composites

    made = composites()[0]
    landmark_id = made.label
    await start_bot(api_server.url, photo_boxes=True)
    mark = telegram.mark()
    update_id = telegram.send_photo(CAROL, made.data)
    call = await telegram.wait_call("sendPhoto", chat_id=CAROL.id, since=mark)
    name = landmark_names()[landmark_id]
    assert call.captions[0].startswith(f"🔲 {name} in your photo"), call.captions
    assert replied_to(call) == telegram.pushed[update_id]["message_id"]
    assert call.at > (await telegram.wait_call("sendMessage", chat_id=CAROL.id, since=mark)).at  # after the verdict
    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
    (REPO_ROOT / "test-artifacts" / "bot-boxed-photo.jpg").write_bytes(call.photos[0])  # for a person to look at
    # The box drawn is where the landmark was pasted: the extent of what the bot drew over the photo
    # (pixels far from the composite's, at the size sent).
    with Image.open(io.BytesIO(call.photos[0])) as sent, Image.open(io.BytesIO(made.data)) as original:
        pixels = np.asarray(sent.convert("RGB")).astype(int)
        before = np.asarray(original.convert("RGB").resize(sent.size)).astype(int)
    drawn = np.argwhere(np.abs(pixels - before).sum(axis=2) > 200)
    assert len(drawn) > 100
    (top, left), (bottom, right) = drawn.min(axis=0), drawn.max(axis=0)
    height, width = pixels.shape[:2]
    found = (left / width, top / height, right / width, bottom / height)
    assert iou(found, made.box) >= 0.4, (found, made.box)


@pytest.mark.parametrize(
    ("fmt", "file_name", "mime_type"),
    [
        ("JPEG", "query.jpg", "image/jpeg"),
        ("PNG", "query.png", "image/png"),
        ("WEBP", "query.webp", "image/webp"),
        ("HEIF", "IMG_0001.HEIC", "image/heic"),
        ("JPEG", "query.jpeg", None),
    ],
)
async def test_image_sent_as_a_document(telegram, start_bot, api_server, clear_query, fmt, file_name, mime_type):
    await start_bot(api_server.url)
    path, landmark_id = clear_query
    data = as_format(path, fmt)
    album, _ = await photo_answer(telegram, ALICE, lambda: telegram.send_document(ALICE, data, file_name, mime_type))
    assert album.captions[0].startswith(f"{landmark_names()[landmark_id]} · ")


async def test_distractor_is_not_a_landmark_but_still_gets_matches(telegram, start_bot, api_server, distractor):
    await start_bot(api_server.url)
    album, summary = await photo_answer(telegram, BORIS, lambda: telegram.send_photo(BORIS, distractor.read_bytes()))
    # A refusal is a refusal: no landmark named, no confidence, no runner-ups; the photos are "not a match".
    assert summary.text == t("not_a_landmark", RU)
    assert len(album.captions) == 5
    assert "📍" not in " ".join(summary.buttons())  # no landmark, so nothing to show on a map


async def test_a_shared_location_is_sent_with_the_next_photo(telegram, start_bot, api_server, clear_query):
    path, landmark_id = clear_query
    row = landmark_rows()[landmark_id]
    await start_bot(api_server.url)
    mark = telegram.mark()
    telegram.send_location(CAROL, float(row["lat"]) + 0.0002, float(row["lon"]))  # about 20 m away
    saved = await telegram.wait_call("sendMessage", chat_id=CAROL.id, since=mark)
    assert saved.text == t("location_saved", EN)
    _, summary = await photo_answer(telegram, CAROL, lambda: telegram.send_photo(CAROL, path.read_bytes()))
    assert "📍 You shared a location 20 m from it." in summary.text.splitlines()


async def test_wrong_input_gets_a_short_helpful_reply(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url)

    async def reply_to(send) -> str:
        mark = telegram.mark()
        send()
        return (await telegram.wait_call("sendMessage", chat_id=ALICE.id, since=mark)).text

    assert await reply_to(lambda: telegram.send_text(ALICE, "what is this?")) == help_body()
    pdf = await reply_to(lambda: telegram.send_document(ALICE, b"%PDF-1.4\n%%EOF\n", "paper.pdf", "application/pdf"))
    assert pdf == f"{t('not_an_image', EN)}\n\n{help_body()}"
    assert await reply_to(lambda: telegram.send_sticker(ALICE)) == t("sticker", EN)
    gif = await reply_to(lambda: telegram.send_document(ALICE, b"GIF89a", "cat.gif", "image/gif"))
    assert gif == t("unsupported_image", EN)
    # A cut-off photo: the API's detail stays in the log, the user reads the bot's own sentence.
    cut = await reply_to(lambda: telegram.send_photo(ALICE, clear_query[0].read_bytes()[:3000]))
    assert cut == t("bad_image", EN)
    fake = await reply_to(lambda: telegram.send_document(ALICE, b"\x00" * 64, "fake.jpg", "image/jpeg"))
    assert fake == t("unsupported_image", EN)
    mark = telegram.mark()
    big = await reply_to(
        lambda: telegram.send_document(
            ALICE, clear_query[0].read_bytes(), "huge.jpg", "image/jpeg", file_size=11 * 2**20
        )
    )
    assert big == t("too_large", EN, max_mb="10")
    assert not telegram.find("getFile", since=mark)  # refused without downloading it
    assert not telegram.find("sendMediaGroup")


async def test_start_and_help_follow_the_users_language(telegram, start_bot, api_server):
    await start_bot(api_server.url)
    mark = telegram.mark()
    telegram.send_text(ALICE, "/start")
    telegram.send_text(BORIS, "/help")
    english = await telegram.wait_call("sendMessage", chat_id=ALICE.id, since=mark)
    russian = await telegram.wait_call("sendMessage", chat_id=BORIS.id, since=mark)
    assert english.text == f"{t('greeting', EN, name='Alice')}\n\n{help_body()}"
    assert russian.text == help_body(RU)
    menus = {c.params.get("language_code"): c.params["commands"] for c in telegram.find("setMyCommands")}
    assert [c["command"] for c in menus[None]] == [c["command"] for c in menus["ru"]] == ["start", "help", "k"]


async def test_api_down_then_back(telegram, start_bot, dev_index, clear_query):
    # The bot's API is on a port where nothing listens yet: the API is "stopped".
    port = free_port()
    await start_bot(f"http://127.0.0.1:{port}")
    photo = clear_query[0].read_bytes()
    album, reply = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, photo))
    assert album is None and reply.text == t("api_down", EN)
    # Meanwhile the bot keeps serving: another user still gets help.
    mark = telegram.mark()
    telegram.send_text(BORIS, "/help")
    assert (await telegram.wait_call("sendMessage", chat_id=BORIS.id, since=mark)).text == help_body(RU)

    server = ApiServer(dev_index, port=port)
    await asyncio.to_thread(server.start)
    try:
        album, _ = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, photo))
        assert album.captions[0].startswith(landmark_names()[clear_query[1]])
    finally:
        await asyncio.to_thread(server.stop)
    album, reply = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, photo))
    assert album is None and reply.text == t("api_down", EN)


async def test_slow_api_gets_the_polite_error(telegram, start_bot, clear_query):
    # An API that accepts the connection and never answers.
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await start_bot(f"http://127.0.0.1:{port}", api_timeout=1)
        started = time.monotonic()
        album, reply = await photo_answer(
            telegram, BORIS, lambda: telegram.send_photo(BORIS, clear_query[0].read_bytes())
        )
        assert album is None and reply.text == t("api_down", RU)
        assert time.monotonic() - started < 5
    finally:
        for writer in hung:
            writer.close()
        server.close()


async def test_flood_control_is_retried_after_the_advised_delay(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url)
    telegram.fail_next("sendMediaGroup", 429, "Too Many Requests: retry after 1", retry_after=1)
    album, summary = await photo_answer(
        telegram, ALICE, lambda: telegram.send_photo(ALICE, clear_query[0].read_bytes())
    )
    refused, accepted = telegram.find("sendMediaGroup", chat_id=ALICE.id)
    assert not refused.ok and accepted.ok and accepted is album
    assert accepted.at - refused.at >= 1.0
    assert accepted.captions == refused.captions and accepted.photos == refused.photos
    assert summary.at > accepted.at


async def test_flood_control_longer_than_the_limit_is_not_waited_for(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url, retry_max_wait=2)
    telegram.fail_next("sendMediaGroup", 429, "Too Many Requests: retry after 30", retry_after=30)
    album, reply = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, clear_query[0].read_bytes()))
    assert album is None and reply.text == t("failed", EN)
    assert len(telegram.find("sendMediaGroup")) == 1


async def test_more_results_and_show_on_map(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url)
    path, landmark_id = clear_query
    first_page, summary = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, path.read_bytes()))
    reference = httpx.post(
        f"{api_server.url}/search",
        params={"k": 10},
        files={"image": ("q.jpg", path.read_bytes(), "image/jpeg")},
        timeout=60,
    ).json()

    mark = telegram.mark()
    telegram.press(ALICE, summary.result, summary.button("More results"))
    answered = await telegram.wait_call("answerCallbackQuery", since=mark)
    second_page, page_summary = await answer_since(telegram, ALICE, mark)
    assert answered.at < second_page.at  # the button stops spinning before the search runs
    rows = landmark_rows()

    def place_caption(match: dict) -> str:
        row = rows[match["landmark_id"]]
        return f"{match['name']} · {row['city']}, {row['country']}"

    assert second_page.captions == [place_caption(m) for m in reference["matches"][5:10]]
    assert page_summary.text.startswith("Results 6–10: ")
    assert sorted(first_page.captions + second_page.captions) == sorted(map(place_caption, reference["matches"]))
    # The next page still answers the user's photo, not the button's message.
    assert replied_to(second_page) == replied_to(page_summary) == replied_to(first_page) != summary.result["message_id"]
    assert MoreResults.unpack(page_summary.button("More results")).page == 2

    row = rows[landmark_id]
    mark = telegram.mark()
    telegram.press(ALICE, summary.result, summary.button("📍"))
    venue = await telegram.wait_call("sendVenue", chat_id=ALICE.id, since=mark)
    assert telegram.find("answerCallbackQuery", since=mark)
    assert (float(venue.params["latitude"]), float(venue.params["longitude"])) == (float(row["lat"]), float(row["lon"]))
    assert venue.params["title"] == row["name"] and venue.params["address"] == f"{row['city']}, {row['country']}"


async def test_buttons_of_another_chat_or_unknown_search_are_refused(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url)
    _, summary = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, clear_query[0].read_bytes()))
    # Boris forges a press on Alice's answer from his own chat.
    forged = {**summary.result, "chat": {"id": BORIS.id, "type": "private"}}
    for data in (summary.button("More results"), MoreResults(search_id=999, page=1).pack()):
        mark = telegram.mark()
        telegram.press(BORIS, forged, data)
        answer = await telegram.wait_call("answerCallbackQuery", since=mark)
        assert answer.params["text"] == t("expired", RU) and answer.params["show_alert"] == "true"
        await asyncio.sleep(0.3)
        assert not [c for c in telegram.calls[mark:] if c.method.startswith("send") and c.method != "sendChatAction"]


async def test_settings_button_changes_the_album_size(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url)
    photo = clear_query[0].read_bytes()
    _, summary = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, photo))
    mark = telegram.mark()
    telegram.press(ALICE, summary.result, summary.button("⚙"))
    chooser = await telegram.wait_call("sendMessage", chat_id=ALICE.id, since=mark)
    assert chooser.text == t("k_prompt", EN, k=5) and chooser.buttons() == [str(k) for k in range(1, 11)]
    telegram.press(ALICE, chooser.result, chooser.button("2"))
    edited = await telegram.wait_call("editMessageText", since=mark)
    assert edited.text == t("k_set", EN, k=2)
    album, summary = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, photo))
    assert len(album.captions) == 2 and summary.button("⚙") and "⚙ Results per photo: 2" in summary.buttons()
    mark = telegram.mark()
    telegram.send_text(ALICE, "/k 11")
    prompt = await telegram.wait_call("sendMessage", chat_id=ALICE.id, since=mark)
    assert prompt.text == f"{t('k_range', EN)}\n\n{t('k_prompt', EN, k=2)}" and len(prompt.buttons()) == 10
    telegram.send_text(ALICE, "/k 1")
    await telegram.wait_call("sendMessage", chat_id=ALICE.id, since=mark, where=lambda c: c.text == t("k_set", EN, k=1))
    album, _ = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, photo))
    assert album.method == "sendPhoto" and len(album.captions) == 1


async def test_one_users_burst_does_not_starve_others(telegram, start_bot, api_server, clear_query):
    await start_bot(api_server.url, user_queue=4)
    photo = clear_query[0].read_bytes()
    mark = telegram.mark()
    for _ in range(20):
        telegram.send_photo(ALICE, photo)
    telegram.send_photo(BORIS, photo)
    boris = await telegram.wait_call("sendMessage", chat_id=BORIS.id, since=mark)
    alice_summaries = [
        c for c in telegram.find("sendMessage", chat_id=ALICE.id, since=mark) if c.params.get("reply_markup")
    ]
    assert len(alice_summaries) <= 2, "Boris waited behind Alice's burst"
    await telegram.wait_call(
        "sendMessage", chat_id=ALICE.id, since=mark, count=4, where=lambda c: bool(c.params.get("reply_markup"))
    )
    await asyncio.sleep(0.5)
    to_alice = telegram.find("sendMessage", chat_id=ALICE.id, since=mark)
    assert [c.text for c in to_alice].count(t("busy", EN)) == 1
    albums = telegram.find("sendMediaGroup", chat_id=ALICE.id, since=mark)
    assert len(albums) == 4
    # After a burst each answer says which photo it belongs to: four different photos, each answered once.
    answered = [replied_to(c) for c in to_alice if c.params.get("reply_markup")]
    assert sorted(answered) == sorted(replied_to(c) for c in albums) and len(set(answered)) == 4
    assert boris.params.get("reply_markup"), boris.text  # Boris got his answer, not an apology


async def test_webhook_mode(telegram, start_bot, api_server):
    port = free_port()
    running = await start_bot(
        api_server.url,
        webhook_url=f"http://127.0.0.1:{port}/telegram/hook",
        webhook_secret="s3cret-Token",
        webhook_host="127.0.0.1",
        webhook_port=port,
    )
    registered = telegram.find("setWebhook")[0]
    assert (
        registered.params["url"] == running.settings.webhook_url and registered.params["secret_token"] == "s3cret-Token"
    )
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": ALICE.id, "type": "private"},
            "from": ALICE.as_dict(),
            "text": "hello",
        },
    }
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            running.settings.webhook_url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
        )
        assert refused.status_code == 401
        accepted = await client.post(
            running.settings.webhook_url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token"}
        )
        assert accepted.status_code == 200
    assert (await telegram.wait_call("sendMessage", chat_id=ALICE.id)).text == help_body()


async def test_k_survives_a_restart_as_a_real_process(telegram, start_bot, api_server, clear_query, tmp_path):
    """/k 3 in one bot; then `python -m bot` as a real process over the same database.

    The process takes its settings from the environment, logs at DEBUG without the token, and
    stops cleanly on SIGTERM.
    """
    first = await start_bot(api_server.url)
    mark = telegram.mark()
    update_id = telegram.send_text(ALICE, "/k 3")
    assert (await telegram.wait_call("sendMessage", chat_id=ALICE.id, since=mark)).text == t("k_set", EN, k=3)
    await telegram.wait_confirmed(update_id)
    await first.stop()

    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "LANDMARKS_API_URL": api_server.url,
        "TELEGRAM_API_BASE": telegram.url,
        "BOT_DB_PATH": str(first.settings.db_path),
        "BOT_POLLING_TIMEOUT": "1",
        "BOT_LOG_LEVEL": "DEBUG",
    }
    log_path = tmp_path / "bot.log"
    mark = telegram.mark()
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
    try:
        await telegram.wait_call("getMe", since=mark, timeout=60)
        album, _ = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, clear_query[0].read_bytes()))
        assert len(album.captions) == 3
        # A photo Telegram cannot serve makes the download fail, with the token in the error's URL.
        _, reply = await photo_answer(telegram, ALICE, lambda: telegram.send_photo(ALICE, None))
        assert reply.text == t("failed", EN)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0, log_path.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = log_path.read_text()
    assert "update failed" in log and "<redacted>" in log
    assert TOKEN.split(":")[1] not in log
    for line in log.splitlines():
        assert line.startswith("ts=") and " level=" in line, line
