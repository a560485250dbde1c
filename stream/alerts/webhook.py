"""Webhook transport: each alert is POSTed as JSON (httpx), with a timeout and retries with a capped
exponential backoff. 5xx, 429, timeouts and connection errors are retried; other 4xx answers are given
up at once (the receiver refuses the message). The URL is never logged unredacted."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from stream.alerts.options import WebhookOptions
from stream.alerts.transport import Transport
from stream.backoff import Backoff
from stream.redact import redact_url

log = logging.getLogger(__name__)


class WebhookTransport(Transport):
    """POST alerts to ``options.url``.

    Messages are ``(alert dict, jpeg bytes or None)``; the body is the alert plus ``snapshot_jpeg``
    (base64) when ``options.snapshot`` is on. Each request carries ``Idempotency-Key: <alert id>`` so a
    receiver can drop a retry of a request it did process but could not answer.
    """

    name = "webhook"

    def __init__(self, options: WebhookOptions) -> None:
        super().__init__(options.queue_size)
        import httpx

        self.options = options
        self.safe_url = redact_url(options.url or "")
        self._client = httpx.Client(timeout=options.timeout_s, headers={"User-Agent": "maskstream"})
        self._backoff = Backoff(options.backoff_initial_s, options.backoff_max_s, 2.0, 0.1)

    def body(self, msg: tuple[dict, bytes | None]) -> bytes:
        alert, jpeg = msg
        obj = dict(alert)
        if self.options.snapshot and jpeg is not None:
            obj["snapshot_jpeg"] = base64.b64encode(jpeg).decode("ascii")
        return json.dumps(obj, separators=(",", ":"), default=str).encode()

    def deliver(self, msg: Any) -> bool | None:
        import httpx

        body = self.body(msg)
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(msg[0].get("id")),
                   **self.options.headers}
        attempt = 0
        while True:
            attempt += 1
            why = ""
            try:
                r = self._client.post(self.options.url, content=body, headers=headers)
                if 200 <= r.status_code < 300:
                    return True
                if r.status_code < 500 and r.status_code != 429:
                    log.warning("webhook %s refused alert %s: HTTP %d", self.safe_url, msg[0].get("id"), r.status_code)
                    return False
                why = f"HTTP {r.status_code}"
            except httpx.TimeoutException:
                why = f"no answer within {self.options.timeout_s:g} s"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            if self.options.max_attempts and attempt >= self.options.max_attempts:
                log.warning("webhook %s: alert %s given up after %d attempts (%s)", self.safe_url,
                            msg[0].get("id"), attempt, why)
                return False
            log.debug("webhook %s: attempt %d failed (%s)", self.safe_url, attempt, why)
            if not self.sleep(self._backoff.delay(attempt)):
                return None

    def close(self, flush_s: float) -> int:
        try:
            return super().close(flush_s)
        finally:
            self._client.close()
