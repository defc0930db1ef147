"""Who is asking, and what they may do.

A command typed on the host runs with no principal: the local user is the host's administrator.
A command over ssh runs as the principal of the key that authenticated it (see `sshentry`).
Admins may do everything; deployers may push to the apps granted to them and run the read-only
commands below on those apps, and nothing else.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from minipaas.errors import MinipaasError
from minipaas.state.names import APP_NAME, _show, parent_of


class PermissionDenied(MinipaasError):
    """The key that asked may not do this."""


# Commands a deployer may run on a granted app (config shows secret values <hidden>: state/config.py); who may see
# an app's processes may see its metrics.
DEPLOYER_READ = frozenset({"ps", "logs", "releases", "releases:info", "config", "domains", "settings", "metrics",
                           "cron:list", "cron:runs"})
# Commands a deployer may run with no app argument (their output is filtered to granted apps).
DEPLOYER_GLOBAL = frozenset({"apps:list", "help", "postgres:list", "redis:list",
                             # the dashboard's login, for the key that asks (access/sessions.py)
                             "dashboard:login", "dashboard:sessions", "dashboard:logout-all"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    fingerprint: str
    apps: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_reach(self, app: str) -> bool:
        """A grant on an app covers its review apps (`<app>--<slug>`)."""
        return self.is_admin or app in self.apps or parent_of(app) in self.apps

    def may_run(self, command: str) -> bool:
        return self.is_admin or command in DEPLOYER_READ or command in DEPLOYER_GLOBAL


# The key a command over ssh acts as, set once by the ssh entry before the command runs (None: a command typed on
# the host). A context variable, not a module global: code that holds no principal of its own (the CLI's commands
# run by the ssh entry) reads it, and a thread or task sees only what its context was given.
_current: ContextVar[Principal | None] = ContextVar("minipaas_principal", default=None)


def current() -> Principal | None:
    return _current.get()


def act_as(principal: Principal | None) -> None:
    _current.set(principal)


def visible(app: str) -> bool:
    p = _current.get()
    return p is None or p.may_reach(app)


def hides_config_values() -> bool:
    p = _current.get()
    return p is not None and not p.is_admin


def authorize(command: str, app: str | None) -> None:
    check(_current.get(), command, app)


def check(p: Principal | None, command: str, app: str | None) -> None:
    """Whether `p` may run `command` on `app`: the rule of the ssh commands, for a caller that holds its principal
    itself (the dashboard serves many keys in one process: no process-wide `current`)."""
    if p is None or p.is_admin:
        return
    if not p.may_run(command):
        raise PermissionDenied(f"{p.name} is a deployer and may not run {command}")
    if app is not None and not p.may_reach(app):
        shown = app if APP_NAME.fullmatch(app) else _show(app)  # the client's argument, on one line
        raise PermissionDenied(f"{p.name} has no access to app {shown}")


def authorize_git(app: str, *, exists: bool, push: bool) -> None:
    p = _current.get()
    if p is None or p.is_admin:
        return
    if not exists:
        raise PermissionDenied(f"app {app} does not exist, and {p.name} may not create apps")
    if not p.may_reach(app):
        raise PermissionDenied(f"{p.name} may not {'push to' if push else 'fetch from'} {app}")
