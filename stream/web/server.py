"""uvicorn in a background thread of the run's process, on a socket bound up front (so a busy port or a
bad address is a clean error before the pipeline starts), stopped within a bounded time."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from stream.errors import UserError

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port).

    Raises:
        UserError: ``web: cannot listen on HOST:PORT (reason)``.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"sinks.web.host {host!r}: cannot be resolved ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise UserError(f"web: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


class WebServer:
    """An ASGI app served by uvicorn on its own thread.

    Args:
        app: the ASGI app.
        host, port: where to listen (port 0: any free port; see :attr:`port` after :meth:`start`).
        shutdown_s: bound on the graceful shutdown (open MJPEG streams are closed by then).
    """

    def __init__(self, app: Any, host: str, port: int, shutdown_s: float = 2.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.shutdown_s = shutdown_s
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind, start the server thread and wait until it accepts connections."""
        import uvicorn

        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,  # request lines never reach the log
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(round(self.shutdown_s))),
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="maskstream-web", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UserError(f"web: the server on {self.host}:{self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Ask uvicorn to exit and join its thread (bounded; idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.shutdown_s + 3.0)
            if self._thread.is_alive():
                log.warning("web server did not stop within %.0f s", self.shutdown_s + 3.0)
                self._server.force_exit = True
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._server = self._thread = self._sock = None
