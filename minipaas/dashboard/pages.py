"""The read-only pages: apps, an app, the host. Each is sync (Starlette runs it in its thread pool: the state
database and the engine are read with blocking calls), asks `auth.viewer` who is asking first, and renders
a Jinja2 template (autoescaped) with what `views` gathered for that key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from minipaas.access.access import PermissionDenied
from minipaas.dashboard import auth, views
from minipaas.errors import NotFound

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
NOTICES = {"rollback": "Rolled back.", "restart": "Restarted.", "scale": "Scaled.", "stop": "Stopped.",
           "start": "Started."}


def render(request: Request, name: str, who: auth.Viewer, **values: Any) -> Response:
    return templates.TemplateResponse(request, name, {"who": who.principal, "csrf": who.csrf, **values})


def apps_page(request: Request) -> Response:
    who = auth.viewer(request)
    wanted = request.query_params.get("q", "")
    rows = views.apps_rows(auth.host(request), who.principal, wanted)
    return render(request, "apps.html", who, rows=rows, q=wanted[:views.MAX_FILTER])


def app_page(request: Request) -> Response:
    who = auth.viewer(request)
    app = request.path_params["app"]
    try:
        page = views.app_page(auth.host(request), who.principal, app,
                              show_values=request.query_params.get("values") == "1")
    except NotFound as exc:
        raise HTTPException(404, exc.message) from None
    except PermissionDenied as exc:
        raise HTTPException(403, exc.message) from None
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    return render(request, "app.html", who, page=page, when=views.when, notice=notice)


def host_page(request: Request) -> Response:
    who = auth.viewer(request)
    try:
        page = views.host_page(auth.host(request), who.principal)
    except PermissionDenied as exc:
        raise HTTPException(403, exc.message) from None
    return render(request, "host.html", who, page=page, when=views.when)


def release_page(request: Request) -> Response:
    """One release with its build log (`releases:info`)."""
    who = auth.viewer(request)
    app, number = request.path_params["app"], request.path_params["number"]
    try:
        release, log = views.release(auth.host(request), who.principal, app, number)
    except NotFound as exc:
        raise HTTPException(404, exc.message) from None
    except PermissionDenied as exc:
        raise HTTPException(403, exc.message) from None
    return render(request, "release.html", who, app=app, release=release, log=log, when=views.when)
