"""A fake Telegram Bot API server: the subset the bot uses, over real HTTP (aiohttp).

The bot talks to it exactly as to api.telegram.org (aiogram's custom server base URL, the bot's
TELEGRAM_API_BASE): it long-polls getUpdates, downloads the user's photo through getFile and the file
URL, and every other call (sendMessage, sendMediaGroup, ...) is recorded, with the uploaded files.
The bot's tests run the bot in-process against it; the deploy check runs it for the bot container.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "123456789:TEST-fake-telegram-token-0123456789abcdef"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Landmark test bot", "username": "landmark_test_bot"}


@dataclass(frozen=True)
class TgUser:
    id: int
    first_name: str = "Ann"
    language_code: str = "en"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": False, "first_name": self.first_name, "language_code": self.language_code}


@dataclass
class Call:
    """One Bot API request the bot made, with what the fake server answered."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    ok: bool = True
    result: Any = None

    @property
    def chat_id(self) -> int | None:
        return int(self.params["chat_id"]) if "chat_id" in self.params else None

    @property
    def text(self) -> str:
        return self.params.get("text", "")

    def _file(self, ref: str) -> bytes:
        return self.files[ref.removeprefix("attach://")]

    @property
    def captions(self) -> list[str]:
        """The captions of an album (sendMediaGroup) or of a single photo (sendPhoto)."""
        if self.method == "sendMediaGroup":
            return [item.get("caption", "") for item in self.params["media"]]
        return [self.params.get("caption", "")]

    @property
    def photos(self) -> list[bytes]:
        if self.method == "sendMediaGroup":
            return [self._file(item["media"]) for item in self.params["media"]]
        return [self._file(self.params["photo"])]

    def button(self, startswith: str) -> str:
        """The callback data of the inline button whose text starts with `startswith`."""
        rows = self.params.get("reply_markup", {}).get("inline_keyboard", [])
        for button in itertools.chain.from_iterable(rows):
            if button["text"].startswith(startswith):
                return button["callback_data"]
        raise AssertionError(f"no button {startswith!r} in {rows}")

    def buttons(self) -> list[str]:
        rows = self.params.get("reply_markup", {}).get("inline_keyboard", [])
        return [button["text"] for button in itertools.chain.from_iterable(rows)]


class FakeTelegram:
    """The Bot API subset the bot uses, with a real HTTP stack, for one bot token.

    It listens on loopback unless told otherwise: the deploy check binds it to the Docker network's
    gateway so that the bot container reaches it, and nowhere else.
    """

    # Bot API parameters that travel as JSON inside the form.
    JSON_PARAMS = {
        "media",
        "reply_markup",
        "reply_parameters",
        "allowed_updates",
        "commands",
        "entities",
        "caption_entities",
    }

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.pushed: dict[int, dict[str, Any]] = {}  # what the user sent, by update id
        self.files: dict[str, tuple[str, bytes]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.faults: dict[str, list[dict[str, Any]]] = {}
        self.confirmed_update_id = 0
        self._closing = False
        self._new_updates = asyncio.Event()
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1") -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, 0).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        # Ends any long poll at once: the server's shutdown waits for its handlers.
        self._closing = True
        self._new_updates.set()
        await self._runner.cleanup()

    # --- what a test does as a Telegram user -------------------------------------------------

    def _push(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = next(self._ids)
        self._updates.append({"update_id": update_id, kind: payload})
        self.pushed[update_id] = payload
        self._new_updates.set()
        return update_id

    def _user_message(self, user: TgUser, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
            "from": user.as_dict(),
            **content,
        }

    def add_file(self, data: bytes | None, suffix: str = ".jpg") -> str:
        """Stores a file the user uploads; None registers a file whose download fails."""
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = (f"uploads/{file_id}{suffix}", data)
        return file_id

    def send_text(self, user: TgUser, text: str) -> int:
        entities = (
            [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
        )
        return self._push("message", self._user_message(user, text=text, entities=entities))

    def send_location(self, user: TgUser, lat: float, lon: float) -> int:
        return self._push("message", self._user_message(user, location={"latitude": lat, "longitude": lon}))

    def send_photo(self, user: TgUser, data: bytes | None) -> int:
        file_id = self.add_file(data)
        size = {"file_id": file_id, "file_unique_id": file_id, "width": 640, "height": 480}
        thumb = {**size, "file_id": f"thumb-{file_id}", "width": 90, "height": 67}
        return self._push("message", self._user_message(user, photo=[thumb, size]))

    def send_document(
        self, user: TgUser, data: bytes, file_name: str, mime_type: str | None, *, file_size: int | None = None
    ) -> int:
        file_id = self.add_file(data, Path(file_name).suffix)
        document = {
            "file_id": file_id,
            "file_unique_id": file_id,
            "file_name": file_name,
            "file_size": file_size or len(data),
        }
        if mime_type:
            document["mime_type"] = mime_type
        return self._push("message", self._user_message(user, document=document))

    def send_sticker(self, user: TgUser) -> int:
        sticker = {
            "file_id": "sticker",
            "file_unique_id": "sticker",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        return self._push("message", self._user_message(user, sticker=sticker))

    def press(self, user: TgUser, message: dict[str, Any], data: str) -> int:
        query = {
            "id": f"cq-{next(self._ids)}",
            "from": user.as_dict(),
            "message": message,
            "chat_instance": "chat-instance",
            "data": data,
        }
        return self._push("callback_query", query)

    def fail_next(self, method: str, error_code: int, description: str, **parameters: Any) -> None:
        """The next call of `method` gets this Bot API error instead of a result."""
        error = {"ok": False, "error_code": error_code, "description": description}
        if parameters:
            error["parameters"] = parameters
        self.faults.setdefault(method, []).append(error)

    # --- what a test reads --------------------------------------------------------------------

    def mark(self) -> int:
        return len(self.calls)

    def find(self, method: str, *, chat_id: int | None = None, since: int = 0) -> list[Call]:
        return [c for c in self.calls[since:] if c.method == method and (chat_id is None or c.chat_id == chat_id)]

    async def wait_call(
        self,
        method: str,
        *,
        chat_id: int | None = None,
        since: int = 0,
        count: int = 1,
        where: Callable[[Call], bool] = lambda call: True,
        timeout: float = 20,
    ) -> Call:
        """Waits until `count` matching calls were made after `since`; returns the last of them."""

        def matching() -> list[Call]:
            return [c for c in self.find(method, chat_id=chat_id, since=since) if c.ok and where(c)]

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: len(matching()) >= count), timeout)
            except TimeoutError:
                seen = [(c.method, c.chat_id, c.text or c.params.get("caption", "")) for c in self.calls[since:]]
                raise AssertionError(f"no {count} x {method} to {chat_id} within {timeout}s; calls: {seen}") from None
        return matching()[count - 1]

    async def wait_confirmed(self, update_id: int, timeout: float = 10) -> None:
        """Waits until the bot acknowledged the update (asked for the next offset)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.confirmed_update_id >= update_id), timeout)

    # --- the HTTP side -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = {}, {}
        for key, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                params[key] = json.loads(value) if key in self.JSON_PARAMS else value
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        call = Call(method, params, files, time.monotonic())
        if self.faults.get(method):
            error = self.faults[method].pop(0)
            call.ok = False
            await self._record(call)
            return web.json_response(error, status=error["error_code"])
        call.result = self._result(method, params)
        call.ok = call.result is not None
        await self._record(call)
        if not call.ok:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}, status=400
            )
        return web.json_response({"ok": True, "result": call.result})

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            async with self._changed:
                self.confirmed_update_id = max(self.confirmed_update_id, offset - 1)
                self._changed.notify_all()
        if not self._updates and not self._closing:
            self._new_updates.clear()
            try:
                await asyncio.wait_for(self._new_updates.wait(), float(params.get("timeout") or 0))
            except TimeoutError:
                pass
        return list(self._updates)

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            **content,
        }
        self.messages[message["message_id"]] = message
        return message

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        chat_id = int(params.get("chat_id") or 0)
        if method == "getMe":
            return BOT_USER
        if method == "getFile":
            if params["file_id"] not in self.files:
                return None
            path, data = self.files[params["file_id"]]
            return {
                "file_id": params["file_id"],
                "file_unique_id": params["file_id"],
                "file_path": path,
                "file_size": len(data or b""),
            }
        if method == "sendMessage":
            return self._message(chat_id, text=params["text"], reply_markup=params.get("reply_markup"))
        if method == "sendPhoto":
            return self._message(chat_id, caption=params.get("caption", ""))
        if method == "sendMediaGroup":
            group = f"group-{next(self._ids)}"
            return [self._message(chat_id, media_group_id=group, caption=m.get("caption", "")) for m in params["media"]]
        if method == "sendVenue":
            location = {"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
            return self._message(
                chat_id, venue={"location": location, "title": params["title"], "address": params["address"]}
            )
        if method == "sendLocation":
            return self._message(
                chat_id, location={"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
            )
        if method == "editMessageText":
            message = self.messages[int(params["message_id"])]
            message.update(text=params["text"])
            return message
        return True  # sendChatAction, answerCallbackQuery, setMyCommands, deleteWebhook, setWebhook...

    async def _file(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        data = next((data for p, data in self.files.values() if p == path), None)
        await self._record(Call("download", {"path": path}, {}, time.monotonic(), ok=data is not None))
        if request.match_info["token"] != TOKEN or data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")
