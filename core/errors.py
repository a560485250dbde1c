"""Errors meant for the user: the CLI prints their message (no traceback) and exits non-zero.

Defined in ``core`` so the evaluation and training code can raise it without importing ``stream``;
``stream.errors.UserError`` is the same class.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a file, key or URL). The message must name it."""

    exit_code = 2
