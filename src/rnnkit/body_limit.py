"""A request-body limit for an ASGI server that holds whether or not the client declares
the body's length (used by :mod:`rnnkit.serving`)."""

from __future__ import annotations


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413, and the server reads
    no more than ``limit`` bytes of it (a declared ``Content-Length`` is refused before
    any byte is read; a chunked body is cut off as soon as it passes the limit)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, f"request body of {declared} bytes is over the limit "
                                     f"of {self.limit}")
            return
        received = 0
        started = too_large = False
        detail = f"request body is over the limit of {self.limit} bytes"

        async def counted_receive():
            nonlocal received, too_large
            if too_large:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # read no further
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def watched_send(message):
            nonlocal started
            if too_large:  # whatever the app made of the cut-off body becomes a 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, detail)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send, detail)

    @staticmethod
    async def _refuse(send, detail: str) -> None:
        import json

        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
