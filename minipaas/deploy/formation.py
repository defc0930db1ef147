"""Process types and their scale: which containers a release runs.

The Procfile names the process types: `web` gets a port, the health check and traffic; any other
type (a worker) just runs; `release` runs once, in a one-off container of the new image, before
anything switches. Counts live in SQLite (`ps:scale APP web=2 worker=1`) and survive deploys; until
then app.json's `formation` decides, and without one web runs once and the other types not at all, as
on Heroku.
"""

from __future__ import annotations

from collections.abc import Callable

from minipaas.access import drains as drain_rules
from minipaas.adapters import engine
from minipaas.deploy import health
from minipaas.errors import Conflict, DeployFailed, InvalidInput
from minipaas.source import procfile as procfile_mod
from minipaas.source.commit import Commit, read_commit
from minipaas.state import apps
from minipaas.state import drains as drain_records
from minipaas.state import formation as records
from minipaas.state.host import Host
from minipaas.state.names import is_count

WEB = "web"
RELEASE = "release"
MAX_SCALE = procfile_mod.MAX_SCALE
PROCESS_TYPE = procfile_mod.PROCESS_TYPE


def read(host: Host, app: str, sha: str) -> Commit:
    """The app's commit `sha`, read once (source/commit.py): what its release's steps receive."""
    return read_commit(host.settings.repo_path(app), sha)


def counts(host: Host, app: str, commit: Commit | None) -> dict[str, int]:
    """How many containers of each type the app runs: web first, then the Procfile's other types. A count
    set with `ps:scale` wins; then app.json's formation; then web 1, the others 0 (`commit` None: no release
    yet, web alone)."""
    stored = records.counts(host, app)
    procs = commit.procs if commit is not None else {}
    defaults = {WEB: 1, **(commit.formation if commit is not None else {})}
    types = [WEB, *sorted(t for t in procs if t not in (WEB, RELEASE))]
    return {t: int(stored.get(t, defaults.get(t, 0))) for t in types}


def check_quota(host: Host, app: str, wanted: dict[str, int]) -> None:
    """Refuse, before any container starts, a formation of more containers than the app's `max-containers`
    (every process type's count together, whoever set it: app.json's formation, `ps:scale`)."""
    limit = int(apps.get_setting(host, app, "max-containers"))
    total = sum(wanted.values())
    if total <= limit:
        return
    asked = " ".join(f"{process}={count}" for process, count in wanted.items() if count)
    raise Conflict(f"{app} would run {total} containers ({asked}), more than its max-containers ({limit}); "
                   + (f"an admin may raise it: minipaas settings:set {app} max-containers {total}"
                      if total <= apps.MAX_CONTAINERS else f"it can be raised to {apps.MAX_CONTAINERS} at most"))


def parse_changes(args: tuple[str, ...] | list[str]) -> dict[str, int]:
    changes = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not PROCESS_TYPE.fullmatch(name) or not is_count(value, 0, MAX_SCALE):
            raise InvalidInput(f"expected TYPE=COUNT with a count from 0 to {MAX_SCALE}, got {arg[:40]!r}")
        if name == RELEASE:
            raise InvalidInput("release runs once per deploy; it cannot be scaled")
        changes[name] = int(value)
    if not changes:
        raise InvalidInput("nothing to scale: ps:scale APP web=2 worker=1")
    return changes


def store_counts(host: Host, app: str, changes: dict[str, int]) -> None:
    records.store_counts(host, app, changes)


def limits(host: Host, app: str) -> engine.Limits:
    """The app's `resource:limit` settings as the engine takes them."""
    values = apps.all_settings(host, app)
    return engine.Limits(memory=values["memory"], cpus=float(values["cpus"]) if values["cpus"] else None,
                         pids=int(values["pids"]), read_only=values["read-only"] == "on")


def container_name(host: Host, app: str, process: str, release: int, index: int) -> str:
    return host.settings.container_name(f"{app}.{process}.{release}" + ("" if index == 1 else f".{index}"))


def start(host: Host, app: str, *, release: int, image: str, port: int, process: str, index: int, env: dict[str, str],
          procs: dict[str, str], progress: Callable[[str], None]) -> engine.Container:
    """Start one container of a process type of a release."""
    s = host.settings
    name = container_name(host, app, process, release, index)
    command = procfile_mod.process_command(procs, process)
    progress(f"-----> Starting {name}")
    return engine.run(
        name=name, image=image, network=s.app_network(app), command=command,
        env={**env, "PORT": str(port)},
        labels={engine.LABEL: str(s.home), engine.APP_LABEL: app, engine.RELEASE_LABEL: str(release),
                engine.PROCESS_LABEL: process, engine.INDEX_LABEL: str(index), engine.PORT_LABEL: str(port)},
        limits=limits(host, app),
        log_config=log_config(host, app, process, release),
    )


def log_config(host: Host, app: str, process: str, release: int) -> dict[str, object] | None:
    """syslog to the home's drains shipper when the app has log drains (running/drains.py), else the default."""
    port = drain_records.port(host.settings)
    if port is None or not drain_records.of(host, app):
        return None
    return drain_rules.log_config(app, process, release, port)


def warn_if_shared_uid(container: engine.Container, progress: Callable[[str], None]) -> None:
    """Say so when the app's processes run as the uid of an account of this host: that account can read
    their environment (the app's config) in /proc and trace them. minipaas' base images never do."""
    import pwd

    uid = engine.process_uid(container.id)
    if not uid:  # root in the container is root on the host: no other account reaches it
        return
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        return
    progress(f"!     warning: {container.name} runs as uid {uid}, which is this host's account {account}: that "
             "account can read the app's environment; run the app as another user (minipaas' base images use "
             "61000; rebuild an older one with `minipaas stack:build --force`)")


def run_release_command(host: Host, app: str, *, image: str, command: str, env: dict[str, str],
                        progress: Callable[[str], None]) -> None:
    """The Procfile's `release:` line, once, before the switch (database migrations); must exit 0."""
    progress(f"-----> Running the release command: {command}")
    code, output = engine.run_to_completion(
        image=image, network=host.settings.app_network(app), command=procfile_mod.shell(command, replaced=False),
        env=env, labels={engine.LABEL: str(host.settings.home), engine.APP_LABEL: app,
                                               engine.PROCESS_LABEL: RELEASE},
        limits=limits(host, app))
    for line in output.splitlines()[-50:]:
        progress(f"       {line}")
    if code != 0:
        raise DeployFailed(f"the release command exited with code {code}; nothing was switched",
                           detail=output[-4000:])


def check_still_running(containers: list[engine.Container], network: str) -> None:
    """Workers have no health check: they must at least not have died by the time the web is healthy."""
    for c in containers:
        now = engine.inspect(c.id, network=network)
        if now.status in ("exited", "dead") or now.restarts > 0:
            raise health.exited(now)
