"""Work out what kind of source a spec string names, and check it before any thread starts."""
from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from stream.errors import UserError
from stream.redact import redact_url
from stream.sources.readers import IMAGE_SUFFIXES

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp")


class SourceKind(str, enum.Enum):
    """What a spec names."""

    WEBCAM = "webcam"
    NETWORK = "network"
    FILE = "file"
    FOLDER = "folder"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source spec.

    Attributes:
        kind: webcam, network, file or folder.
        target: webcam index (int), URL (with credentials: pass only to the backend) or path.
        safe_name: printable name (URLs redacted).
    """

    kind: SourceKind
    target: int | str = field(repr=False)  # may hold a password: never shown
    safe_name: str = ""


def parse_spec(spec: str) -> SourceSpec:
    """Classify ``spec``: a webcam index ("0"), a network URL, a video file or an image folder.

    Raises:
        UserError: naming the spec when it is empty, a URL with an unknown scheme or no host,
            or a path that does not exist or cannot be read.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty source spec {spec!r}: give a webcam index, a URL, a video file or an image folder")
    spec = spec.strip()
    if re.fullmatch(r"\d+", spec):
        return SourceSpec(SourceKind.WEBCAM, int(spec), f"webcam:{int(spec)}")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", spec):
        safe = redact_url(spec)
        try:
            parts = urlsplit(spec)
            host = parts.hostname
        except ValueError as exc:
            raise UserError(f"malformed URL {safe}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme == "file":
            return parse_spec(parts.path)
        if scheme not in NETWORK_SCHEMES:
            raise UserError(f"unsupported URL scheme {scheme!r} in {safe}; use one of {', '.join(NETWORK_SCHEMES)}")
        if not host:
            raise UserError(f"URL {safe} has no host")
        return SourceSpec(SourceKind.NETWORK, spec, safe)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise UserError(f"cannot read image folder {spec} (permission denied)")
        return SourceSpec(SourceKind.FOLDER, str(path), spec)
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise UserError(f"cannot read video file {spec} (permission denied)")
        return SourceSpec(SourceKind.FILE, str(path), spec)
    if path.exists():
        raise UserError(f"source {spec} is neither a regular file nor a folder")
    raise UserError(f"no such video file or image folder: {spec}")


def _natural_key(path: Path) -> list[object]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def list_images(folder: str) -> list[Path]:
    """Image files directly inside ``folder`` in natural order (``2.png`` before ``10.png``).

    Raises:
        UserError: naming the folder when it cannot be listed or holds no image.
    """
    try:
        entries = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    except OSError as exc:
        raise UserError(f"cannot read image folder {folder}: {exc.strerror or exc}") from None
    if not entries:
        raise UserError(
            f"no images in folder {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return sorted(entries, key=_natural_key)
