"""Options of the web view sink (``sinks.web``) and of the Prometheus metrics sink (``sinks.metrics``).

Validated on construction; a bad value raises ``stream.errors.ConfigValueError`` naming the key (the config
loader prefixes the section path).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NoReturn

from stream.errors import ConfigValueError

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def _fail(key: str, message: str) -> NoReturn:
    raise ConfigValueError(key, message)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost (the only addresses served without ``allow_remote``)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebOptions:
    """The live web view (``maskstream run --serve [HOST:]PORT`` turns it on).

    Attributes:
        enabled: serve the page, the MJPEG streams, the JSON API and /metrics.
        host: address to listen on; loopback unless ``allow_remote`` is true.
        port: TCP port (0: any free port; the chosen one is printed).
        allow_remote: permit a non-loopback ``host`` (0.0.0.0, a LAN address). Set a token too.
        token_file: file whose first line is the bearer token; the environment variable
            ``MASKSTREAM_TOKEN`` wins when set. None and no variable: no token (loopback only is advised).
        mjpeg_fps: at most this many frames per second per MJPEG viewer.
        mjpeg_width: MJPEG frames are shrunk to this width (px, keeping the aspect); 0: frame size.
        jpeg_quality: JPEG quality of the MJPEG frames and snapshots, 1..100.
        events_kept: recent events kept for ``/api/events``.
        snapshots_kept: latest no-mask snapshots kept for the page.
        shutdown_s: seconds viewers get to be closed at the end of the run.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    allow_remote: bool = False
    token_file: str | None = None
    mjpeg_fps: float = 10.0
    mjpeg_width: int = 640
    jpeg_quality: int = 75
    events_kept: int = 1000
    snapshots_kept: int = 8
    shutdown_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.host.strip():
            _fail("host", "must be a host name or address, got ''")
        if not 0 <= self.port <= 65535:
            _fail("port", f"must be an int in [0, 65535], got {self.port}")
        if self.enabled and not self.allow_remote and not is_loopback(self.host):
            _fail(
                "host",
                f"{self.host} is not a loopback address; the web view serves only this machine unless "
                "sinks.web.allow_remote is true (then set a token: MASKSTREAM_TOKEN or sinks.web.token_file)",
            )
        if not 0 < self.mjpeg_fps <= 120:
            _fail("mjpeg_fps", f"must be in (0, 120], got {self.mjpeg_fps}")
        if not (self.mjpeg_width == 0 or 16 <= self.mjpeg_width <= 8192):
            _fail("mjpeg_width", f"must be 0 (frame size) or in [16, 8192], got {self.mjpeg_width}")
        if not 1 <= self.jpeg_quality <= 100:
            _fail("jpeg_quality", f"must be an int in [1, 100], got {self.jpeg_quality}")
        if not 1 <= self.events_kept <= 1_000_000:
            _fail("events_kept", f"must be an int in [1, 1000000], got {self.events_kept}")
        if not 0 <= self.snapshots_kept <= 100:
            _fail("snapshots_kept", f"must be an int in [0, 100], got {self.snapshots_kept}")
        if not 0 < self.shutdown_s <= 60:
            _fail("shutdown_s", f"must be in (0, 60] seconds, got {self.shutdown_s}")


@dataclass(frozen=True)
class MetricsOptions:
    """Prometheus metrics (official ``prometheus_client``), served at ``/metrics`` by the web view.

    Attributes:
        enabled: count frames, latency, source state and people for ``/metrics``.
        textfile: also write the final metrics to this file at the end of the run (Prometheus
            text format, for node_exporter's textfile collector and for batch runs). None: off.
        latency_buckets: upper bounds (seconds) of the latency histogram buckets, increasing.
    """

    enabled: bool = True
    textfile: str | None = None
    latency_buckets: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __post_init__(self) -> None:
        b = self.latency_buckets
        if not b or any(v <= 0 for v in b) or any(b2 <= b1 for b1, b2 in zip(b, b[1:])):
            _fail("latency_buckets", f"must be a non-empty increasing list of seconds > 0, got {list(b)}")
