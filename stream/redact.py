"""Hide credentials in URLs before they reach a log, an event, an id, an exception or an overlay.

``redact_url("rtsp://admin:hunter2@cam.local:554/live?token=abc")``
-> ``"rtsp://admin:***@cam.local:554/live?token=***"``.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"

# Query-string keys whose values are secrets (compared lower-case, '-' read as '_').
SECRET_KEYS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "token", "access_token", "auth", "auth_token",
    "authorization", "api_key", "apikey", "key", "sig", "signature", "session", "sessionid",
    "x_amz_signature", "x_amz_security_token", "x_amz_credential", "credential", "credentials",
})

# scheme://user:password@ : the password runs to the LAST '@' before the path (a raw '@' inside
# a password is common in camera URLs), never across '/' or whitespace.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/\s]*)@")
# key=value inside a query (after ? or &, or ; as some cameras use).
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<key>[^=&;#\s]+)=(?P<val>[^&;#\s]*)")


def _is_secret_key(key: str) -> bool:
    return key.lower().replace("-", "_") in SECRET_KEYS


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its user info and secret query values masked.

    Keeps everything else byte for byte (scheme, user name, host, port, path, other
    parameters), so the result still says which stream it is. Works on strings that do
    not parse as URLs too (it never raises).

    Args:
        url: any string, typically ``rtsp://user:pass@host:port/path?x=y``.

    Returns:
        The URL with ``user:***@`` and ``token=***`` style masking.
    """
    if not isinstance(url, str):
        url = str(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or "://" not in url:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        query = _redact_query(query)
    fragment = parts.fragment
    if fragment and "=" in fragment:
        fragment = _redact_query(fragment)
    # The regex pass also catches URLs nested in the path or query (proxies, redirects).
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, fragment)))


def _redact_query(query: str) -> str:
    out = []
    for chunk in re.split(r"([&;])", query):
        if chunk in ("&", ";") or "=" not in chunk:
            out.append(chunk)
            continue
        key, _, _value = chunk.partition("=")
        out.append(f"{key}={MASK}" if _is_secret_key(_unquote(key)) else chunk)
    return "".join(out)


def _unquote(key: str) -> str:
    try:
        pairs = parse_qsl(key + "=x", keep_blank_values=True)
        return pairs[0][0] if pairs else key
    except ValueError:
        return key


def redact_text(text: str) -> str:
    """Mask credentials of every URL found inside free text (error messages, log lines).

    Args:
        text: any text, e.g. an OpenCV error that quotes a URL.

    Returns:
        The text with ``scheme://user:***@`` and secret ``key=***`` query values masked.
    """
    if not isinstance(text, str):
        text = str(text)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)

    def _pair(m: re.Match[str]) -> str:
        if _is_secret_key(_unquote(m["key"])):
            return f"{m['sep']}{m['key']}={MASK}"
        return m.group(0)

    return _QUERY_PAIR.sub(_pair, text)
