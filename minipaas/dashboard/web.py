"""The dashboard's Starlette app: its routes, and the guards every request and response passes.

Before any route runs, `Guard` refuses what no page of ours takes: a query string or path beyond a few KiB,
a path or query that is not UTF-8 once percent-decoded, NUL or control characters, a body beyond 64 KiB.
Every response gets the security headers (a strict CSP: script from the dashboard itself only, no inline
script or style; `X-Frame-Options: DENY`; a referrer only to the dashboard itself, so a login link never leaves
in one, and a form's `Origin` is sent; no caching).
Every error is a plain page with its status: never a traceback (Starlette's debug stays off).
"""

from __future__ import annotations

import html
import traceback
from pathlib import Path
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minipaas.state.settings import Settings

HERE = Path(__file__).parent
MAX_PATH = 2048
MAX_QUERY = 2048
MAX_BODY = 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def plain_page(status: int, message: str) -> HTMLResponse:
    """An error as a page of its own: the status and one sentence, nothing of the server's insides."""
    text = html.escape(message)
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{status}</title>'
            f'<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
            f'<link rel="stylesheet" href="/static/dashboard.css"></head><body><main class="error">'
            f'<h1>{status}</h1><p>{text}</p><p><a href="/">minipaas dashboard</a></p></main></body></html>')
    return HTMLResponse(body, status_code=status)


def _refusal(scope: Scope) -> tuple[int, str] | None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    if len(raw_path) > MAX_PATH:
        return 414, "that address is too long"
    if len(query) > MAX_QUERY:
        return 414, "that query string is too long"
    for part, what in ((raw_path, "address"), (query.replace(b"+", b" "), "query string")):
        try:
            decoded = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            return 400, f"the {what} is not UTF-8"
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in decoded):
            return 400, f"the {what} holds control characters"
    return None


class _TooLarge(HTTPException):
    """A request body past MAX_BODY, found while it was read: the route's plain 413 (an HTTPException, which
    Starlette's own handler turns into `_http_error`'s page)."""

    def __init__(self) -> None:
        super().__init__(413, "that request is too large")


class Guard:
    """Pure ASGI middleware: the input checks above, the security headers, and a plain 500 for a bug."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(HEADERS)]
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + HEADERS}
            await send(message)

        refused = _refusal(scope)
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if refused is None and (not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY):
            refused = (413, "that request is too large")
        if refused is not None:
            await plain_page(*refused)(scope, receive, send_with_headers)
            return
        received = 0

        async def receive_counted() -> Message:
            # A body sent in chunks says no length: it is counted as it comes, and cut off past the limit.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, receive_counted, send_with_headers)
        except Exception:
            if started:
                raise  # a stream that broke midway: nothing more can be sent (uvicorn logs it)
            traceback.print_exc()  # to dashboard.log, which the page names
            await plain_page(500, "the dashboard failed on this page; the host's dashboard.log says why")(
                scope, receive, send_with_headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return plain_page(exc.status_code, exc.detail or "refused")


async def _server_error(request: Request, exc: Exception) -> Response:
    return plain_page(500, "the dashboard failed on this page; the host's dashboard.log says why")


def create_app(settings: Settings) -> ASGIApp:
    from minipaas.dashboard import actions, auth, live, pages

    routes = [
        Route("/", pages.apps_page),
        Route("/apps/{app}", pages.app_page),
        Route("/apps/{app}/releases/{number}", pages.release_page),
        Route("/apps/{app}/logs", live.logs_page),
        Route("/apps/{app}/logs/stream", live.logs_stream),
        Route("/apps/{app}/push", live.push_page),
        Route("/apps/{app}/push/stream", live.push_stream),
        Route("/apps/{app}/rollback", actions.rollback, methods=["POST"]),
        Route("/apps/{app}/restart", actions.restart, methods=["POST"]),
        Route("/apps/{app}/scale", actions.scale, methods=["POST"]),
        Route("/apps/{app}/stop", actions.stop, methods=["POST"]),
        Route("/apps/{app}/start", actions.start, methods=["POST"]),
        Route("/host", pages.host_page),
        Route("/login/{token}", auth.login),
        Route("/logout", auth.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error,
                                                              Exception: _server_error})
    app.state.settings = settings
    return Guard(app)
