"""The ``serve`` extra (starlette, uvicorn, prometheus-client, httpx, paho-mqtt) of the web view, metrics and
alert sinks: imported only when a config turns such a sink on, and a clear error when one is missing."""

from __future__ import annotations

import importlib.util
from typing import Mapping

from stream.errors import UserError


def require_serve_extra(section: str, modules: Mapping[str, str]) -> None:
    """Raise a ``UserError`` naming ``section`` unless every module (import name -> PyPI name) is installed."""
    missing = [pkg for mod, pkg in modules.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise UserError(f"{section} needs {', '.join(missing)}: pip install 'maskstream[serve]'")
