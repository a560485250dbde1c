"""MQTT transport (paho-mqtt): QoS 1 publishes under ``<prefix>/...``, reconnect with backoff, a
retained ``<prefix>/status`` (``online``) and a last will that sets it to ``offline`` when maskstream
dies without saying goodbye, so a dashboard knows it is gone.

paho keeps QoS 1 messages (up to ``queue_size``) while the broker is away and sends them after it
reconnects; ``publish`` never waits on the network, so the pipeline never waits on the broker.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from stream.alerts.options import MqttOptions
from stream.errors import UserError
from stream.sinks.base import safe_name

log = logging.getLogger(__name__)
PASSWORD_ENV = "MASKSTREAM_MQTT_PASSWORD"


def _password(opts: MqttOptions) -> str | None:
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if opts.password_file is None:
        return None
    try:
        return Path(opts.password_file).read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise UserError(f"sinks.alerts.mqtt.password_file {opts.password_file}: cannot be read "
                        f"({getattr(exc, 'strerror', None) or 'empty'})") from None


class MqttTransport:
    """Publishes alerts, person events, source states and snapshots.

    Args:
        options: the ``sinks.alerts.mqtt`` section.
    """

    name = "mqtt"

    def __init__(self, options: MqttOptions) -> None:
        import paho.mqtt.client as mqtt

        self.options = options
        self.prefix = options.topic_prefix
        self.status_topic = f"{self.prefix}/status"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=options.client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        if options.username is not None:
            c.username_pw_set(options.username, _password(options))
        c.will_set(self.status_topic, b"offline", qos=1, retain=True)
        c.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        c.max_queued_messages_set(options.queue_size)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._mqtt = mqtt
        self.client = c
        # acknowledgements: a lock of its own, never held while calling paho (paho calls on_publish
        # while holding its own message lock, which publish() also takes)
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._acked_early: set[int] = set()
        self._sent = 0
        self.connected = threading.Event()
        self.connects = 0
        self.submitted = self.dropped = self.failed = self.undelivered = 0
        self._closed = False

    def topic(self, source: str, leaf: str) -> str:
        """``<prefix>/<source as a safe topic level>/<leaf>`` (no wildcards, no credentials)."""
        return f"{self.prefix}/{safe_name(source)}/{leaf}"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ARG002
        if getattr(reason_code, "is_failure", False):
            log.warning("mqtt: broker %s:%d refused the connection (%s)", self.options.host, self.options.port,
                        reason_code)
            return
        self.connects += 1
        self.connected.set()
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        log.info("mqtt: connected to %s:%d", self.options.host, self.options.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ARG002
        self.connected.clear()
        if not self._closed:
            log.warning("mqtt: lost the broker %s:%d (%s); reconnecting", self.options.host, self.options.port,
                        reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ARG002
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self._sent += 1
            else:  # acknowledged before publish() returned to us (or a status message)
                self._acked_early.add(mid)
                if len(self._acked_early) > 10_000:
                    self._acked_early.clear()

    def start(self) -> None:
        self.client.connect_async(self.options.host, self.options.port, keepalive=self.options.keepalive_s)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str | dict, retain: bool = False) -> bool:
        """Queue a QoS 1 message (never blocks); False when paho's queue is full (counted as dropped)."""
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":"), default=str)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
                self.dropped += 1
                return False
            self.submitted += 1
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
                self._sent += 1
            else:
                self._pending.add(info.mid)
        return True

    def submit(self, msg: tuple[dict, bytes | None]) -> bool:
        """An alert: JSON to ``<prefix>/<source>/alert``, its snapshot (retained JPEG) to ``.../snapshot``."""
        alert, jpeg = msg
        ok = self.publish(self.topic(alert.get("source", ""), "alert"), alert)
        if jpeg is not None and self.options.snapshot:
            self.publish(self.topic(alert.get("source", ""), "snapshot"), jpeg, retain=True)
        return ok

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self, flush_s: float) -> int:
        """Wait up to ``flush_s`` for every queued message to be acknowledged, say ``offline`` (retained),
        disconnect; returns how many were not acknowledged."""
        if self._closed:
            return self.undelivered
        deadline = time.monotonic() + flush_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self.undelivered = self.pending
        self._closed = True
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        return self.undelivered

    def counts(self) -> dict:
        return {"submitted": self.submitted, "sent": self.sent, "dropped": self.dropped, "failed": self.failed,
                "pending": self.pending, "undelivered": self.undelivered}
