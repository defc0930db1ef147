"""The dashboard's actions (POST, CSRF-checked: auth.checked_form): roll back, restart, scale, stop and start
(an app or a review app).

Each is the ssh command itself (`releases:rollback`, `ps:restart`, `ps:scale`, `ps:stop`, `ps:start`), allowed
by the same rule (`access.check` with the session's key: a deployer may run none of them) and run as the same CLI in a
process of its own, as the host's `minipaas` would run it, named after the key (MINIPAAS_USER: a release
says who made it). The deploy path's locks, its long waits and its process-wide state stay out of the web
server. Every action is one event in the audit log, its command marked `dashboard:`, with its outcome.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from minipaas.access import access, events
from minipaas.dashboard import auth, views
from minipaas.errors import NotFound

ACTION_SECONDS = 1800
SOURCE = "dashboard:"  # how the audit log marks an action of the dashboard
_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
_PROCESS = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_COUNT = re.compile(r"[0-9]{1,3}")


def execute(argv: list[str], *, home: str, user: str) -> subprocess.CompletedProcess[str]:
    """The command, as the host's `minipaas` runs it, for this home, named after the key."""
    env = {**os.environ, "MINIPAAS_HOME": home, "MINIPAAS_USER": user}
    return subprocess.run([sys.executable, "-m", "minipaas", *argv], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=ACTION_SECONDS)


def _run(request: Request, who: auth.Viewer, app: str, argv: list[str], done: str) -> Response:
    host = auth.host(request)
    principal = who.principal
    try:
        views.reachable(host, principal, app)
    except NotFound as exc:
        raise HTTPException(404, exc.message) from None
    command = f"{SOURCE} {shlex.join(argv)}"
    event = events.start(host, user=principal.name, fingerprint=principal.fingerprint, app=app, command=command)
    try:
        access.check(principal, argv[0], app)
    except access.PermissionDenied as exc:
        events.finish(host, event, f"refused: {exc.message}")
        raise HTTPException(403, exc.message) from None
    try:
        result = execute(argv, home=str(host.settings.home), user=principal.name)
    except subprocess.TimeoutExpired:
        events.finish(host, event, "timed out")
        raise HTTPException(504, f"{argv[0]} did not finish within {ACTION_SECONDS} s") from None
    events.finish(host, event, "ok" if result.returncode == 0 else f"exit {result.returncode}")
    if result.returncode != 0:
        said = [line for line in result.stderr.splitlines() if line.strip()]
        raise HTTPException(400, said[-1] if said else f"{argv[0]} failed (exit {result.returncode})")
    return RedirectResponse(f"/apps/{app}?done={done}", status_code=303)


async def rollback(request: Request) -> Response:
    who, form = await auth.checked_form(request)
    app, number = request.path_params["app"], form.get("release")
    if not isinstance(number, str) or not _NUMBER.fullmatch(number):
        raise HTTPException(400, "which release? (a release number)")
    return await run_in_threadpool(_run, request, who, app, ["releases:rollback", app, number], "rollback")


async def restart(request: Request) -> Response:
    who, _form = await auth.checked_form(request)
    app = request.path_params["app"]
    return await run_in_threadpool(_run, request, who, app, ["ps:restart", app], "restart")


async def scale(request: Request) -> Response:
    who, form = await auth.checked_form(request)
    app, process, count = request.path_params["app"], form.get("process"), form.get("count")
    if not isinstance(process, str) or not _PROCESS.fullmatch(process) or not isinstance(count, str) \
            or not _COUNT.fullmatch(count):
        raise HTTPException(400, "scale takes a process type and a count (web, 2)")
    return await run_in_threadpool(_run, request, who, app, ["ps:scale", app, f"{process}={count}"], "scale")


async def stop(request: Request) -> Response:
    who, _form = await auth.checked_form(request)
    app = request.path_params["app"]
    return await run_in_threadpool(_run, request, who, app, ["ps:stop", app], "stop")


async def start(request: Request) -> Response:
    who, _form = await auth.checked_form(request)
    app = request.path_params["app"]
    return await run_in_threadpool(_run, request, who, app, ["ps:start", app], "start")
