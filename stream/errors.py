"""Errors meant for the user: the CLI prints their message (no traceback) and exits non-zero."""
from __future__ import annotations

from core.errors import UserError  # the one class; defined in core so core's commands can raise it

__all__ = ["ConfigValueError", "UserError", "check"]


class ConfigValueError(ValueError):
    """A bad option value; ``key`` is the field name (the config loader prefixes the section path).

    Raised by every options dataclass (``SourceOptions``, each sink's and backend's options) in its
    ``__post_init__``, so one loader names the file and the dotted key for all of them.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key} {message}")
        self.key = key
        self.message = message


def check(cond: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigValueError` (``key``, ``message``) unless ``cond``."""
    if not cond:
        raise ConfigValueError(key, message)
