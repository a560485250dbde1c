"""The web view's routes (starlette): the page, MJPEG per source, JSON API, /metrics, snapshots.

``/``                      the page (``page.html``: self-contained, no asset from the internet)
``/sources/{key}.mjpg``    multipart/x-mixed-replace JPEG stream; ``?fps=`` and ``?width=`` may lower the caps
``/sources/{key}.jpg``     the newest frame once
``/api/status``            sources (state, FPS, latency, counts, people in view), people counts, snapshots
``/api/people``            people in view per source and every decided person
``/api/events?since=N``    events after sequence number N (state, person, alert)
``/snapshots/{id}.jpg``    a no-mask snapshot
``/metrics``               Prometheus text format (when metrics are on)
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stream.web.auth import TokenAuth
from stream.web.state import LiveState

PAGE = Path(__file__).with_name("page.html")
BOUNDARY = "frame"
NO_STORE = {"Cache-Control": "no-store"}


def _number(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        return default
    return min(max(v, lo), hi)


def create_app(
    live: LiveState,
    *,
    mjpeg_fps: float = 10.0,
    token: str | None = None,
    registry: Any = None,
    closing: threading.Event | None = None,
) -> Any:
    """The ASGI app over ``live``.

    Args:
        live: the state the sinks keep up to date.
        mjpeg_fps: per-viewer frame-rate cap.
        token: bearer token (None: open).
        registry: a ``prometheus_client.CollectorRegistry`` for /metrics (None: /metrics is 404).
        closing: set at shutdown; MJPEG streams end within a quarter second of it.
    """
    closing = closing or threading.Event()
    page = PAGE.read_bytes()

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=NO_STORE)

    def _slot(key: str):
        slot = live.slots.get(key)
        if slot is None:
            return None
        return slot

    async def mjpeg(request: Request) -> Response:
        slot = _slot(request.path_params["key"])
        if slot is None:
            return JSONResponse({"error": "no such source"}, status_code=404)
        fps = _number(request, "fps", mjpeg_fps, 0.1, mjpeg_fps)
        width = int(_number(request, "width", slot.width or 0, 16, slot.width or 8192)) if (
            "width" in request.query_params) else None

        async def frames():
            loop = asyncio.get_running_loop()
            wake = asyncio.Event()
            unwatch = slot.watch(loop, wake)
            last, gap, next_t = 0, 1.0 / fps, 0.0
            try:
                while not closing.is_set():
                    if slot.seq == last:
                        wake.clear()
                        if slot.seq == last:
                            try:
                                await asyncio.wait_for(wake.wait(), 0.25)
                            except asyncio.TimeoutError:
                                continue
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    got = await asyncio.to_thread(slot.jpeg, width)
                    if got is None:
                        await asyncio.sleep(0.05)
                        continue
                    last, data = got
                    next_t = time.monotonic() + gap
                    yield (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                        + data
                        + b"\r\n"
                    )
            finally:
                unwatch()

        return StreamingResponse(
            frames(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def still(request: Request) -> Response:
        slot = _slot(request.path_params["key"])
        got = None if slot is None else await asyncio.to_thread(slot.jpeg)
        if got is None:
            return JSONResponse({"error": "no frame yet" if slot else "no such source"}, status_code=404)
        return Response(got[1], media_type="image/jpeg", headers=NO_STORE)

    async def status(request: Request) -> Response:
        return JSONResponse(live.status(), headers=NO_STORE)

    async def people(request: Request) -> Response:
        return JSONResponse(live.people_json(), headers=NO_STORE)

    async def events(request: Request) -> Response:
        raw = request.query_params.get("since", "0")
        try:
            since = int(raw)
        except ValueError:
            return JSONResponse({"error": f"since must be an integer, got {raw[:40]!r}"}, status_code=400)
        return JSONResponse(live.events_since(since), headers=NO_STORE)

    async def snapshot(request: Request) -> Response:
        data = live.snapshot(int(request.path_params["sid"]))
        if data is None:
            return JSONResponse({"error": "no such snapshot (only the newest are kept)"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def metrics(request: Request) -> Response:
        if registry is None:
            return JSONResponse({"error": "metrics are off (sinks.metrics.enabled: false)"}, status_code=404)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    routes = [
        Route("/", index),
        Route("/sources/{key}.mjpg", mjpeg),
        Route("/sources/{key}.jpg", still),
        Route("/api/status", status),
        Route("/api/people", people),
        Route("/api/events", events),
        Route("/snapshots/{sid:int}.jpg", snapshot),
        Route("/metrics", metrics),
    ]
    return TokenAuth(Starlette(routes=routes), token)
