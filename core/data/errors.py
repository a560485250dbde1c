"""The one error type for bad data on disk."""
from __future__ import annotations


class DataError(ValueError):
    """A data file or one of its entries is missing or malformed. The message names it."""


def read_json_list(path, what: str = "") -> list:
    """The JSON list stored at ``path``; ``DataError`` naming the file when it is unreadable or not a list.

    Args:
        path: a ``pathlib.Path`` to an existing file.
        what: what the list holds, for the message (e.g. ``"images"``).
    """
    import json

    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(raw, list):
        of = f" of {what}" if what else ""
        raise DataError(f"{path}: expected a JSON list{of}, but got {type(raw).__name__}")
    return raw
