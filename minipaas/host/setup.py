"""`minipaas init`: create or upgrade everything this host's settings call for, idempotently.

Several instances can live on one host (MINIPAAS_HOME, MINIPAAS_INSTANCE): before it writes anything, `init`
refuses with one line what would make this instance take another's place on the host (the host's nginx in
system mode, a sudoers rule or systemd unit of its name that serves another home). An upgrade rewrites
this instance's ssh key lines and its installed sudoers rule in today's form (they name their instance).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from minipaas.access import keys, sudoers
from minipaas.adapters import gitrepo, nginx
from minipaas.addons import roles as addon_roles
from minipaas.build import builderchoice, buildkit
from minipaas.deploy import rollout
from minipaas.errors import InvalidInput
from minipaas.host import units
from minipaas.routing import domains, proxy
from minipaas.state import apps, perms, store
from minipaas.state.host import Host
from minipaas.state.settings import Settings, load


def init(progress: Callable[[str], None], settings: Settings | None = None) -> Settings:
    s = settings or load()
    _check_host_files(s)
    # The builder is found once, here, and written down: a push does not probe the docker CLIs.
    s = dataclasses.replace(s, builder=_builder(s))
    # Modes and owners first (perms.POLICY), repairing an install from before the policy: from here
    # on, no local account but root (and nginx's workers, where they must) can read the home.
    problems = perms.secure_home(s, repair=True)
    perms.write_file(s.layout.settings_file, s.to_toml().encode(), perms.PRIVATE_FILE)
    for repo in sorted(s.repos_dir.glob("*.git")):
        gitrepo.configure(repo)  # e.g. objects pushed later are created 0400/0600 by git itself
    version = store.upgrade(s.db_path, wait=s.db_wait)
    progress(f"-----> State in {s.db_path} (schema version {version})")
    for problem in problems:
        progress(f"       warning: {problem}")
    _upgrade_ssh(s, progress)
    if perms.workers_gid(s) is not None:
        progress(f"-----> {s.home} is root's; nginx's workers ({s.nginx_user}:{perms.workers_group_name(s)}) "
                 "reach only static sites and ACME challenges")
    else:
        progress(f"-----> {s.home} is its owner's alone (without root, nginx's workers run as you)")
    if s.nginx == "system" and perms.workers_gid(s) is not None:
        host_user = nginx.system_user()
        if host_user not in (None, s.nginx_user):
            progress(f"       warning: the host's nginx runs its workers as {host_user}, not {s.nginx_user}: they "
                     f"cannot enter {s.home}; set MINIPAAS_NGINX_USER={host_user} and run `minipaas init` again")
    progress(f"-----> Apps get a Docker network each, on a /26 of {s.subnets}")
    proxy.setup(s)
    # Every app's vhost from today's template: an upgrade may change how vhosts route (a host from
    # before the routing table still had vhosts sending to the retired router, which answered 502).
    host = Host(s)
    for app in apps.names(host):
        proxy.write_site(host, app, domains.of(host, app))
    where = f"private nginx on 127.0.0.1:{s.http_port}" if s.nginx == "private" else \
        f"the host's nginx on port {s.http_port}"
    progress(f"-----> Apps are served at http://<app>.{s.domain} by {where}")
    for line in builderchoice.describe(s):
        progress(f"-----> {line[0].upper()}{line[1:]}")
    # Postgres services an earlier version made: a role per linked app instead of the superuser's URL.
    for problem in addon_roles.upgrade_all(host, progress, releases=rollout):
        progress(f"       warning: {problem}")
    return s


def _builder(s: Settings) -> str:
    """auto and buildkit are resolved now; a builder found earlier is kept while its CLI is there."""
    wanted = s.builder
    if wanted.startswith(("buildkit:", "buildx:")) and not buildkit.parse(wanted).cli_exists():
        wanted = "auto"
    return buildkit.find(wanted, prefer_legacy=builderchoice.enforcement().layout is None).spec


def _check_host_files(s: Settings) -> None:
    """One line, before anything is written, when this instance would take another's place on the host, or
    when nginx's workers could not reach its home (static sites would answer 404 with nothing said)."""
    if s.nginx == "system":
        proxy.check_system_nginx(s)
    sudoers.installed(s)
    units.check(s)
    blocked = perms.workers_blocked_at(s)
    if blocked is not None and not blocked.exists():
        raise InvalidInput(f"{blocked}, above MINIPAAS_HOME {s.home}, does not exist: make it so that {s.nginx_user} "
                           "(nginx's workers) can pass through it (mkdir -m 0755), or choose another home")
    if blocked is not None:
        raise InvalidInput(f"{s.nginx_user} (nginx's workers) cannot pass through {blocked}, above MINIPAAS_HOME "
                           f"{s.home}: it could not serve static sites; move the home, or let others pass through "
                           "that folder (chmod o+x)")


def _upgrade_ssh(s: Settings, progress: Callable[[str], None]) -> None:
    """Key lines written by an older minipaas named no instance and no fingerprint (ssh-command now refuses
    them): this instance's block of authorized_keys again, and its installed sudoers rule, which lets
    exactly the new lines through."""
    host = Host(s)
    if keys.rewrite_on_upgrade(host):
        progress(f"-----> ssh keys: this instance's lines of {s.authorized_keys} name it ({s.home})")
    if os.geteuid() == 0 and sudoers.upgrade(s):
        progress(f"-----> ssh: {sudoers.path_for(s)} rewritten for this instance's key lines")
