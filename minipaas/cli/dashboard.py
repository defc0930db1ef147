"""The web dashboard: dashboard:login, dashboard:sessions, dashboard:logout-all, and its process (`dashboard`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from minipaas.cli.common import current_host, say, table, when
from minipaas.errors import InvalidInput

if TYPE_CHECKING:
    from minipaas.access.access import Principal


def _principal(key: str | None) -> Principal:
    """The key a command is for: over ssh the key that asks (and no other); on the host, `--key NAME`."""
    from minipaas.access import access, keys

    asking = access.current()
    if asking is not None:
        if key is not None and key != asking.name:
            raise InvalidInput(f"over ssh a login is for the key that asks ({asking.name}); --key is for the host")
        return asking
    if key is None:
        raise InvalidInput("on the host, say whose login this is: --key NAME (a login belongs to an ssh key)")
    record = keys.get(current_host(), keys.check_name(key))
    return access.Principal(record.name, record.role, record.fingerprint, frozenset(record.apps))


@click.command("dashboard:login")
@click.option("--key", help="On the host: the ssh key the login is for (over ssh: always the key that asks)")
def dashboard_login(key: str | None) -> None:
    """Print a one-time link (valid 5 minutes) that logs a browser into the dashboard as your key."""
    from minipaas.access import sessions
    from minipaas.routing import certfiles, proxy

    host = current_host()
    principal = _principal(key)
    token = sessions.mint_link(host, principal)
    s = host.settings
    if certfiles.paths(s, proxy.DASHBOARD_SITE) is not None:
        base = f"https://{s.dashboard_host}{'' if s.https_port == 443 else f':{s.https_port}'}"
    else:
        base = f"http://{s.dashboard_host}{'' if s.http_port == 80 else f':{s.http_port}'}"
    say(f"{base}/login/{token}")
    click.echo(f"(one use, valid {sessions.LINK_SECONDS // 60} minutes; the session lasts "
               f"{sessions.SESSION_SECONDS // 3600} hours)", err=True)


@click.command("dashboard:sessions")
def dashboard_sessions() -> None:
    """Open dashboard sessions: your key's (an admin on the host: every key's)."""
    from minipaas.access import access, sessions

    asking = access.current()
    rows = sessions.listing(current_host(), None if asking is None or asking.is_admin else asking.name)
    table(([r["key_name"], when(float(str(r["created_at"]))), when(float(str(r["last_seen"]))),
            when(float(str(r["expires_at"])))] for r in rows), ["KEY", "LOGGED IN", "LAST SEEN", "EXPIRES"])


@click.command("dashboard:logout-all")
@click.option("--key", help="On the host: whose sessions end (over ssh: always the key that asks)")
def dashboard_logout_all(key: str | None) -> None:
    """End every dashboard session (and unused login link) of your key."""
    from minipaas.access import sessions

    principal = _principal(key)
    ended = sessions.logout_all(current_host(), principal.name)
    say(f"-----> Ended {ended} dashboard session{'s' if ended != 1 else ''} of {principal.name}")


@click.command("dashboard", hidden=True)
def dashboard_cmd() -> None:
    """Serve the dashboard on its socket until killed (started by ps:restore)."""
    from minipaas.dashboard import server

    server.run(current_host().settings)


def all_commands() -> list[click.Command]:
    return [dashboard_login, dashboard_sessions, dashboard_logout_all, dashboard_cmd]
