"""Optional bearer token for every endpoint of the web view (an ASGI middleware).

The token comes from the environment variable ``MASKSTREAM_TOKEN`` or from ``sinks.web.token_file``; it is
never logged and never written into a page. Clients send ``Authorization: Bearer <token>``; a browser
posts it once to ``/login`` and then carries a cookie holding a SHA-256 digest of it (not the token).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from urllib.parse import parse_qs

from stream.errors import UserError

ENV_VAR = "MASKSTREAM_TOKEN"
COOKIE = "maskstream_auth"

LOGIN_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>maskstream: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;place-items:center;
height:100vh;margin:0}form{background:#1e293b;padding:2em;border-radius:12px}input{font:inherit;padding:.5em;
border-radius:6px;border:1px solid #475569;background:#0f172a;color:inherit}button{font:inherit;padding:.5em 1em;
border:0;border-radius:6px;background:#22c55e;color:#052e16;margin-left:.5em}</style></head><body>
<form method="post" action="/login"><p>This maskstream web view needs its access token.</p>
<input type="password" name="token" autocomplete="current-password" aria-label="token" autofocus>
<button type="submit">Sign in</button></form></body></html>"""


def load_token(token_file: str | None) -> str | None:
    """The token from ``MASKSTREAM_TOKEN`` (wins) or the first line of ``token_file``; None when neither.

    Raises:
        UserError: naming the file when it cannot be read or is empty (the token is never quoted).
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    if token_file is None:
        return None
    p = Path(token_file)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"sinks.web.token_file {p}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not line:
        raise UserError(f"sinks.web.token_file {p}: is empty")
    return line


def _digest(token: str) -> str:
    return hashlib.sha256(("maskstream:" + token).encode()).hexdigest()


class TokenAuth:
    """ASGI middleware: 401 on every request without the token (``/login`` excepted: it is how a browser
    hands the token over). ``token`` None: everything passes."""

    def __init__(self, app, token: str | None) -> None:
        self.app = app
        self.token = token
        self._digest = _digest(token) if token else ""

    def _ok(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self._digest.encode()):
                return True
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["path"] == "/login" and scope["method"] == "POST":
            await self._login(receive, send)
            return
        if self._ok(headers):
            await self.app(scope, receive, send)
            return
        html = b"text/html" in headers.get(b"accept", b"")
        body = LOGIN_PAGE if html else b'{"error": "unauthorized: send Authorization: Bearer <token>"}\n'
        await _respond(send, 401, body, b"text/html; charset=utf-8" if html else b"application/json",
                       [(b"www-authenticate", b'Bearer realm="maskstream"')])

    async def _login(self, receive, send) -> None:
        body, more = b"", True
        while more and len(body) < 4096:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        if hmac.compare_digest(token.encode(), self.token.encode()):
            cookie = f"{COOKIE}={self._digest}; HttpOnly; SameSite=Strict; Path=/".encode()
            await _respond(send, 303, b"", b"text/plain", [(b"location", b"/"), (b"set-cookie", cookie)])
        else:
            await _respond(send, 401, LOGIN_PAGE, b"text/html; charset=utf-8",
                           [(b"www-authenticate", b'Bearer realm="maskstream"')])


async def _respond(send, status: int, body: bytes, ctype: bytes, extra: list) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")] + extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
