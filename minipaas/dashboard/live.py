"""Live views as server-sent events: an app's container logs, followed (`logs -f`, processes.logs), and its
running (or last) push's log, from its first line (deploy/pushlog.py).

Each page itself holds the lines there were when it was rendered (without JavaScript it is a page to reload);
static/dashboard.js opens an EventSource on the stream and appends each line as it comes. Each event is one
line as text (the browser's `textContent`: nothing of it is markup). Both go on after a reconnect from the last
line the browser got, none twice, none lost: the browser sends the last event's id back (`Last-Event-ID`; the
script, when it opens a new EventSource after a refused reconnect, as `?after=`). A push's event id is its
offset in the log; a container log's is a cursor (running/logcursor.py: each source's last stamp), and the page
gives its stream the cursor of the lines it holds, so the lines printed between the page and the stream come too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from minipaas.access import access
from minipaas.dashboard import auth, pages, views
from minipaas.errors import MinipaasError, NotFound
from minipaas.running import logcursor
from minipaas.state.host import Host
from minipaas.state.settings import Settings

PAGE_LINES = 200
MAX_LINE = 8192
POLL_SECONDS = 0.1


def _allowed(request: Request, command: str = "logs") -> tuple[auth.Viewer, str]:
    who = auth.viewer(request)
    app = request.path_params["app"]
    try:
        views.reachable(auth.host(request), who.principal, app)
        access.check(who.principal, command, app)
    except NotFound as exc:
        raise HTTPException(404, exc.message) from None
    except access.PermissionDenied as exc:
        raise HTTPException(403, exc.message) from None
    return who, app


def logs_page(request: Request) -> Response:
    from minipaas.running import processes

    who, app = _allowed(request)
    started, cursor = time.time_ns(), logcursor.Cursor()
    try:
        stamped = list(processes.stamped_logs(auth.host(request), app, cursor, lines=PAGE_LINES, follow=False))
        stamped.sort(key=lambda s: s[1] or 0)  # several containers' lines in the order they were printed
        for source, ns, _ in stamped:
            cursor.admit(source, ns)
        lines, error = [text.decode("utf-8", errors="replace") for _, _, text in stamped[-PAGE_LINES:]], ""
    except MinipaasError as exc:
        lines, error = [], exc.message
    cursor.baseline = started  # a container the page has no line of is read from when the page was asked for
    return pages.render(request, "logs.html", who, app=app, lines=lines, error=error, cursor=cursor.render())


def stamped_sse(stamped: Iterator[tuple[str, int | None, bytes]], cursor: logcursor.Cursor) -> Iterator[bytes]:
    """Server-sent events of stamped lines, those `cursor` had dropped; each event's id is the cursor after it."""
    yield b"retry: 2000\n\n"
    try:
        for source, ns, line in stamped:
            if cursor.admit(source, ns):
                yield (b"id: " + cursor.render().encode() + b"\ndata: " + line[:MAX_LINE].replace(b"\r", b"")
                       + b"\n\n")
    except MinipaasError as exc:  # no container runs (yet): said as an event of its own, the browser retries
        yield b"event: problem\ndata: " + exc.message.encode()[:MAX_LINE].replace(b"\n", b" ") + b"\n\n"


def logs_stream(request: Request) -> Response:
    from minipaas.running import processes

    _who, app = _allowed(request)
    cursor = logcursor.Cursor.parse(request.headers.get("last-event-id") or request.query_params.get("after"))
    # A connection of its own: the stream is read in the thread pool's threads, whichever is free (SQLite's
    # connections are per thread; this one is used once, in the first read, before any line).
    followed = processes.stamped_logs(Host(request.app.state.settings), app, cursor, lines=0, follow=True)
    return StreamingResponse(stamped_sse(followed, cursor), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def push_page(request: Request) -> Response:
    from minipaas.deploy import pushlog

    who, app = _allowed(request, "releases:info")  # a push's lines are its release's build log
    found = pushlog.read_from(auth.host(request).settings, app, 0)
    lines = found[0] if found else []
    return pages.render(request, "push.html", who, app=app, lines=[line for _, line in lines],
                        offset=lines[-1][0] if lines else 0, finished=bool(lines)
                        and lines[-1][1].startswith(pushlog.FINISHED), none=found is None)


def push_events(settings: Settings, app: str, offset: int) -> Iterator[bytes]:
    """The push's log from `offset` on as events (id: the offset after the line), until its FINISHED line;
    `reset` when a new push started the file anew."""
    from minipaas.deploy import pushlog

    yield b"retry: 1000\n\n"
    while True:
        found = pushlog.read_from(settings, app, offset)
        if found is None:
            yield b"event: problem\ndata: no push to this app yet\n\n"
            return
        lines, reset = found
        if reset:
            yield b"event: reset\ndata: a new push\n\n"
        for offset, line in lines:
            yield f"id: {offset}\ndata: {line[:MAX_LINE]}\n\n".encode()
            if line.startswith(pushlog.FINISHED):
                yield b"event: end\ndata: finished\n\n"
                return
        if not lines:
            time.sleep(POLL_SECONDS)


def push_stream(request: Request) -> Response:
    _who, app = _allowed(request, "releases:info")
    start = request.headers.get("last-event-id") or request.query_params.get("after", "0")
    offset = int(start) if start.isascii() and start.isdigit() and len(start) < 12 else 0
    return StreamingResponse(push_events(request.app.state.settings, app, offset), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
