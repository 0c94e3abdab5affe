"""A pure ASGI guard that refuses request bodies over the upload limit before they are buffered."""

from __future__ import annotations

from api.asgi import send_error


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen = 0
        exceeded = False
        response_started = False

        async def limited_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message):
            # A body without Content-Length (chunked) is found too large only while the app reads it;
            # whatever the app then answers (its form parser turns the error into a 400), it is a 413.
            nonlocal response_started
            if exceeded:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if exceeded and not response_started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        limit_mb = self.max_bytes / (1024 * 1024)
        detail = f"The upload is larger than the {limit_mb:.0f} MB limit."
        await send_error(send, 413, detail, [(b"connection", b"close")])
