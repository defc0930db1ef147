"""Who is asking: the session cookie, the key it belongs to (checked again on every request), and CSRF.

A login link (`/login/<token>`, minted by `dashboard:login`) is spent once for a session
(access/sessions.py). The cookie is HttpOnly, SameSite=Strict, Secure when nginx says the request came over
HTTPS, and lasts as long as the session (12 h). The page it answers with moves on to the apps by a meta
refresh (a navigation of the dashboard's own, which a SameSite=Strict cookie goes along with; a redirect
straight from a link clicked in another site's page would arrive without it).

Every POST must carry the session's CSRF token in its form, and, when the browser says where it comes from
(`Origin`, `Sec-Fetch-Site`), come from the dashboard itself; else 403 and nothing is done.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from minipaas.access import sessions
from minipaas.access.access import Principal
from minipaas.state.host import Host
from minipaas.state.settings import Settings

COOKIE = "minipaas_dashboard"
_local = threading.local()


def host(request: Request) -> Host:
    """This thread's connection to the state database (SQLite: one per thread)."""
    settings: Settings = request.app.state.settings
    found = getattr(_local, "host", None)
    if found is None or found.settings is not settings:
        found = _local.host = Host(settings)
    return found


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    csrf: str
    session: str


def is_https(request: Request) -> bool:
    # Only nginx reaches the socket (its folder admits nginx's workers alone): its header is the truth.
    return request.headers.get("x-forwarded-proto") == "https"


def viewer(request: Request) -> Viewer:
    """The key this request's session belongs to, as it is now; 401 without a valid session."""
    session = request.cookies.get(COOKIE, "")
    if not session:
        raise HTTPException(401, "not logged in: run `ssh paas@HOST dashboard:login` and open the link it prints")
    try:
        principal, csrf = sessions.principal_of(host(request), session)
    except sessions.Refused as exc:
        raise HTTPException(401, f"{exc.message}: run `dashboard:login` over ssh for a new link") from None
    return Viewer(principal, csrf, session)


def login(request: Request) -> Response:
    """Spend a login link for a session (sync: Starlette runs it in its thread pool, as the pages)."""
    try:
        session = sessions.redeem(host(request), request.path_params["token"])
    except sessions.Refused as exc:
        raise HTTPException(403, exc.message) from None
    page = HTMLResponse('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Logged in</title>'
                        '<meta http-equiv="refresh" content="0;url=/">'
                        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
                        '<link rel="stylesheet" href="/static/dashboard.css"></head><body><main>'
                        f'<p>Logged in as {session.key_name}. <a href="/">Continue to the dashboard</a>.</p>'
                        '</main></body></html>')
    page.set_cookie(COOKIE, session.id, max_age=sessions.SESSION_SECONDS, path="/", httponly=True,
                    secure=is_https(request), samesite="strict")
    return page


async def checked_form(request: Request) -> tuple[Viewer, FormData]:
    """A POST's viewer and form, once its origin and CSRF token are right (403 otherwise)."""
    who = await run_in_threadpool(viewer, request)
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, "refused: this form was sent from another site")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{'https' if is_https(request) else 'http'}://{request.headers.get('host')}":
        raise HTTPException(403, "refused: this form was sent from another site")
    form = await request.form(max_files=0, max_fields=20)
    token = form.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), who.csrf.encode()):
        raise HTTPException(403, "refused: the form's CSRF token is missing or wrong (reload the page)")
    return who, form


async def logout(request: Request) -> Response:
    who, _form = await checked_form(request)
    await run_in_threadpool(sessions.logout, host(request), who.session)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=is_https(request), samesite="strict")
    return response
