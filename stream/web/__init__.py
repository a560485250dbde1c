"""The live web view: an ASGI app (starlette) served by uvicorn in the run's own process.

Kept import-light: ``stream.config`` imports :mod:`stream.web.options`; the server and the app
(starlette, uvicorn) are imported only when ``--serve`` or ``sinks.web.enabled`` asks for them.
"""
