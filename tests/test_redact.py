"""URL credential redaction: table of URL forms -> expected masked text."""
from __future__ import annotations

import pytest

from stream.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:pass@host/path", "rtsp://user:***@host/path"),
        ("rtsp://admin:hunter2@10.0.0.5:554/Streaming/Channels/101",
         "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"),
        # percent-encoded and raw '@' inside the password
        ("rtsp://user:p%40ss@cam:554/live", "rtsp://user:***@cam:554/live"),
        ("rtsp://user:p@ss@cam/live", "rtsp://user:***@cam/live"),
        # empty user, empty password, user only
        ("rtsp://:pw@h/", "rtsp://:***@h/"),
        ("rtsp://user@host/x", "rtsp://user@host/x"),
        # IPv6 host
        ("rtsp://u:pw@[::1]:8554/test", "rtsp://u:***@[::1]:8554/test"),
        # query-string secrets, other parameters kept, order kept
        ("http://h/video.mjpg?password=abc", "http://h/video.mjpg?password=***"),
        ("https://h/s?channel=1&token=xyz&fmt=h264", "https://h/s?channel=1&token=***&fmt=h264"),
        ("https://h/s?Api-Key=k1&user=bob&pwd=p", "https://h/s?Api-Key=***&user=bob&pwd=***"),
        ("https://h/s?access_token=t#frag", "https://h/s?access_token=***#frag"),
        ("rtsp://u:p@h/x?auth=a&b=2", "rtsp://u:***@h/x?auth=***&b=2"),
        # nothing to hide: unchanged
        ("rtsp://127.0.0.1:8554/test", "rtsp://127.0.0.1:8554/test"),
        ("https://example.com/a?b=1", "https://example.com/a?b=1"),
        ("0", "0"),
        ("/videos/clip.mp4", "/videos/clip.mp4"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    # idempotent, and the text scanner agrees on a bare URL
    assert redact_url(expected) == expected
    assert redact_text(url) == expected


def test_redact_text_finds_urls_inside_messages() -> None:
    msg = "cannot open rtsp://cam:s3cr3t@10.1.1.1/a (then tried http://h/x?token=zz&q=1) twice"
    out = redact_text(msg)
    assert out == "cannot open rtsp://cam:***@10.1.1.1/a (then tried http://h/x?token=***&q=1) twice"
    assert "s3cr3t" not in out and "zz" not in out


def test_nested_url_in_query_is_redacted() -> None:
    out = redact_url("rtsp://u:p1@h/x?next=rtsp://v:p2@h2/y")
    assert out == "rtsp://u:***@h/x?next=rtsp://v:***@h2/y"


def test_never_raises_on_garbage() -> None:
    for junk in ["http://[::1", "://", "rtsp://u:p@", "x" * 10_000, "rtsp://a:b@c:notaport/x"]:
        out = redact_url(junk)
        assert isinstance(out, str)
    assert "p" not in redact_url("rtsp://u:p@").split("u:")[1].replace("***", "")
    assert "b@" not in redact_url("rtsp://a:b@c:notaport/x")
