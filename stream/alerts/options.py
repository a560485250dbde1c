"""Options of the alert sink (``sinks.alerts``): what raises an alert, limits per source, and the
webhook and MQTT transports. Validated on construction; errors name the key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn

from stream.errors import ConfigValueError

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _fail(key: str, message: str) -> NoReturn:
    raise ConfigValueError(key, message)


def parse_quiet_hours(spans: tuple[str, ...], key: str = "quiet_hours") -> tuple[tuple[int, int], ...]:
    """``("22:00-06:30",)`` -> ``((1320, 390),)``: (start, end) minutes after local midnight.

    A span whose end is before its start crosses midnight. Raises ConfigValueError naming ``key``.
    """
    out = []
    for i, s in enumerate(spans):
        m = _HHMM.match(s.strip())
        if not m:
            _fail(f"{key}[{i}]", f"must be 'HH:MM-HH:MM' (local time, 24 h), got {s!r}")
        a = int(m[1]) * 60 + int(m[2])
        b = int(m[3]) * 60 + int(m[4])
        if a == b:
            _fail(f"{key}[{i}]", f"start and end are equal in {s!r} (an empty span)")
        out.append((a, b))
    return tuple(out)


@dataclass(frozen=True)
class SourceLimits:
    """Per-source alert limits (``sinks.alerts.sources.<source id>`` overrides the defaults ``sinks.alerts.limits``).

    Attributes:
        max_alerts: at most this many alerts per ``period_s`` for the source (0: no limit).
        period_s: the rate-limit window, seconds.
        quiet_hours: local-time spans 'HH:MM-HH:MM' with no alert of the source (counted as suppressed).
    """

    max_alerts: int = 10
    period_s: float = 60.0
    quiet_hours: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_alerts < 0:
            _fail("max_alerts", f"must be an int >= 0 (0: no limit), got {self.max_alerts}")
        if not self.period_s > 0:
            _fail("period_s", f"must be > 0 seconds, got {self.period_s}")
        parse_quiet_hours(self.quiet_hours)


@dataclass(frozen=True)
class WebhookOptions:
    """HTTP POST of each alert as JSON.

    Attributes:
        url: http(s) URL to POST to; None: no webhook.
        timeout_s: per-request timeout.
        max_attempts: tries per alert before it is given up (0: until the run ends).
        backoff_initial_s / backoff_max_s: wait before retry n is initial * 2**(n-1), capped.
        queue_size: alerts waiting for delivery; beyond it new alerts are dropped and counted.
        snapshot: include the explained snapshot as base64 JPEG (``snapshot_jpeg``).
        headers: extra request headers (e.g. an Authorization of the receiver).
    """

    url: str | None = None
    timeout_s: float = 5.0
    max_attempts: int = 0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    queue_size: int = 100
    snapshot: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.url is not None and not re.match(r"^https?://[^/\s]+", self.url):
            _fail("url", "must be an http:// or https:// URL")  # the URL itself may hold a secret
        if not 0 < self.timeout_s <= 300:
            _fail("timeout_s", f"must be in (0, 300] seconds, got {self.timeout_s}")
        if self.max_attempts < 0:
            _fail("max_attempts", f"must be an int >= 0 (0: until the run ends), got {self.max_attempts}")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            _fail("backoff_initial_s", f"must be > 0 and <= backoff_max_s ({self.backoff_max_s}), "
                  f"got {self.backoff_initial_s}")
        if not 1 <= self.queue_size <= 100_000:
            _fail("queue_size", f"must be an int in [1, 100000], got {self.queue_size}")


@dataclass(frozen=True)
class MqttOptions:
    """MQTT publishing with paho-mqtt (QoS 1): ``<topic_prefix>/<source>/alert``, ``.../person``,
    ``.../state`` (retained), ``.../snapshot`` (retained JPEG) and ``<topic_prefix>/status``
    (retained ``online``; the last will sets ``offline``).

    Attributes:
        host: broker host; None: no MQTT.
        port: broker port.
        client_id: MQTT client id.
        username / password_file: broker login (the password is read from the file or the
            environment variable ``MASKSTREAM_MQTT_PASSWORD``; never logged).
        topic_prefix: first topic level.
        keepalive_s: MQTT keepalive.
        reconnect_min_s / reconnect_max_s: reconnect backoff.
        queue_size: messages waiting while the broker is away; beyond it new ones are dropped and counted.
        person_events: also publish every person event (appeared, decided, changed, left).
        snapshot: publish the explained snapshot of each no-mask alert.
    """

    host: str | None = None
    port: int = 1883
    client_id: str = "maskstream"
    username: str | None = None
    password_file: str | None = None
    topic_prefix: str = "maskstream"
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    queue_size: int = 1000
    person_events: bool = True
    snapshot: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            _fail("port", f"must be an int in [1, 65535], got {self.port}")
        if not self.client_id or len(self.client_id) > 64:
            _fail("client_id", f"must be 1..64 characters, got {self.client_id!r}")
        if not re.match(r"^[A-Za-z0-9._/-]+$", self.topic_prefix) or self.topic_prefix.endswith("/"):
            _fail("topic_prefix", f"must be letters, digits, . _ - / (no wildcards, no trailing /), "
                  f"got {self.topic_prefix!r}")
        if not 5 <= self.keepalive_s <= 3600:
            _fail("keepalive_s", f"must be an int in [5, 3600], got {self.keepalive_s}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            _fail("reconnect_min_s", f"must be > 0 and <= reconnect_max_s ({self.reconnect_max_s}), "
                  f"got {self.reconnect_min_s}")
        if not 1 <= self.queue_size <= 1_000_000:
            _fail("queue_size", f"must be an int in [1, 1000000], got {self.queue_size}")


@dataclass(frozen=True)
class AlertsOptions:
    """Alerts: a person decided ``without_mask`` (once per person and per change of label, from the
    tracker's person events), and a source down for longer than ``source_down_s``.

    Until person events arrive (no tracker in the run), a frame-level fallback alerts on a run of
    ``fallback_frames`` consecutive frames of one source showing ``without_mask`` (a detection or
    the frame label), once per run; it re-arms after as many frames without it. The fallback is
    switched off for good as soon as the first person event arrives.

    Attributes:
        labels: labels that raise a person alert.
        source_down_s: alert when a source stays disconnected/reconnecting/failed this long (0: never).
        fallback_frames: frames of the frame-level fallback (0: no fallback).
        snapshot_margin: the snapshot crops the person's box enlarged by this fraction per side.
        flush_s: at the end of the run, seconds the transports get to deliver what is queued.
        limits: default per-source limits.
        sources: per-source limits by source id (as shown on the page and in events).
        webhook: the webhook transport.
        mqtt: the MQTT transport.
    """

    labels: tuple[str, ...] = ("without_mask",)
    source_down_s: float = 30.0
    fallback_frames: int = 5
    snapshot_margin: float = 0.25
    flush_s: float = 5.0
    limits: SourceLimits = field(default_factory=SourceLimits)
    sources: dict[str, SourceLimits] = field(default_factory=dict)
    webhook: WebhookOptions = field(default_factory=WebhookOptions)
    mqtt: MqttOptions = field(default_factory=MqttOptions)

    def __post_init__(self) -> None:
        if not self.labels:
            _fail("labels", "must name at least one label")
        if self.source_down_s < 0:
            _fail("source_down_s", f"must be >= 0 seconds (0: never), got {self.source_down_s}")
        if not 0 <= self.fallback_frames <= 10_000:
            _fail("fallback_frames", f"must be an int in [0, 10000] (0: off), got {self.fallback_frames}")
        if not 0 <= self.snapshot_margin <= 2:
            _fail("snapshot_margin", f"must be in [0, 2], got {self.snapshot_margin}")
        if not 0 < self.flush_s <= 120:
            _fail("flush_s", f"must be in (0, 120] seconds, got {self.flush_s}")

    @property
    def enabled(self) -> bool:
        """True when a transport is configured."""
        return self.webhook.url is not None or self.mqtt.host is not None

    def limits_for(self, source: str) -> SourceLimits:
        """The limits of ``source`` (its own entry, else the defaults)."""
        return self.sources.get(source, self.limits)
