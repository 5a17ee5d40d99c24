"""`create_app`: the Starlette application, and `serve`: run it with uvicorn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from qtasks.exc import BrokerError
from qtasks.webview import api, pages
from qtasks.webview.params import BadRequest
from qtasks.webview.security import Guard
from qtasks.webview.settings import Settings, Target
from qtasks.webview.source import Source

log = logging.getLogger("qtasks.webview")
HERE = Path(__file__).resolve().parent


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _unavailable(request: Request, exc: Exception) -> Response:
    # The error text may name the Redis host; it goes to the log, never to the client.
    log.warning("Redis request failed for %s: %s", request.url.path, exc)
    message = "Redis is unavailable or refused the request; see the dashboard's log."
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=503)
    return PlainTextResponse(message, status_code=503)


async def _bad_request(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": str(exc)}, status_code=400)
    return PlainTextResponse(str(exc), status_code=400)


def create_app(
    target: Target | None = None,
    settings: Settings | None = None,
    *,
    source: Source | None = None,
) -> Starlette:
    """The dashboard for `target` (or an existing `source`). The Redis connection is opened
    lazily in the server's event loop and closed at shutdown."""
    settings = settings if settings is not None else Settings()
    if source is None:
        if target is None:
            raise ValueError("create_app needs a target (app name and Redis URL) or a source")
        source = Source(target)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await source.close()

    app = Starlette(
        routes=[
            *api.routes,
            *pages.routes,
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[Middleware(Guard, settings=settings)],
        exception_handlers={
            BrokerError: _unavailable,
            RedisError: _unavailable,  # the record listings talk to redis-py directly
            BadRequest: _bad_request,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.source = source
    return app


def serve(
    target: Target, settings: Settings, log_level: str = "info", **uvicorn_options: Any
) -> None:
    """Run the dashboard until interrupted (refuses an unauthenticated public bind)."""
    import uvicorn

    settings.check_bind()
    app = create_app(target, settings)
    where = f"http://{settings.host}:{settings.port}/"
    if ":" in settings.host:
        where = f"http://[{settings.host}]:{settings.port}/"
    auth = "token" if settings.auth.token else "basic auth" if settings.auth.password else "none"
    log.warning(
        "qtasks-webview for app %r on %s (auth: %s%s)",
        target.name,
        where,
        auth,
        ", read-only" if settings.read_only else "",
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        **uvicorn_options,
    )
