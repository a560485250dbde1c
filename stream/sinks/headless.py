"""The headless sinks of a run (metrics, alerts, web view) built from a config, sharing one metrics registry.

``stream.pipeline.build_sinks`` calls :func:`build_headless_sinks`; the packages they need (the ``serve``
extra) are imported only when the config turns them on.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from stream.config import Config
from stream.errors import UserError

log = logging.getLogger(__name__)


def build_headless_sinks(cfg: Config, source_ids: list[str], sources: Sequence[Any] | None = None) -> list:
    """Metrics (``metrics:``), alerts (``alerts:``) and the web view (``web:``), sharing one metrics registry."""
    out: list = []
    registry = None
    if cfg.web.enabled or cfg.alerts.enabled or cfg.metrics.textfile:
        _need_serve_extra(cfg)
    if cfg.metrics.enabled and (cfg.web.enabled or cfg.metrics.textfile):
        from stream.sinks.metrics import MetricsSink

        m = MetricsSink(cfg.metrics, source_ids, sources=sources)
        registry = m.registry
        out.append(m)
    alerts = None
    if cfg.alerts.enabled:
        from stream.sinks.alerts import AlertSink

        alerts = AlertSink(cfg.alerts, registry=registry)
        out.append(alerts)
    if cfg.web.enabled:
        from stream.sinks.web import WebSink
        from stream.web.auth import load_token

        token = load_token(cfg.web.token_file)
        if token is None and cfg.web.allow_remote:
            log.warning("web: serving other machines without a token (set MASKSTREAM_TOKEN or web.token_file)")
        web = WebSink(cfg.web, source_ids, registry=registry, token=token, alert_labels=cfg.alerts.labels,
                      fallback_frames=cfg.alerts.fallback_frames, snapshot_margin=cfg.alerts.snapshot_margin)
        out.append(web)
        if alerts is not None:  # the page's event log shows source down/up alerts (no-mask ones it finds itself)
            alerts.on_alert = lambda a: web.live.add_event(a) if a["kind"].startswith("source_") else None
    return out


def _need_serve_extra(cfg: Config) -> None:
    """A clear error when a package of the ``serve`` extra is missing."""
    import importlib.util

    need = {"prometheus_client": "prometheus-client"}
    if cfg.web.enabled:
        need.update(starlette="starlette", uvicorn="uvicorn")
    if cfg.alerts.webhook.url:
        need["httpx"] = "httpx"
    if cfg.alerts.mqtt.host:
        need["paho"] = "paho-mqtt"
    missing = [pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise UserError(f"the web view / metrics / alerts need {', '.join(missing)}: pip install 'maskstream[serve]'")
