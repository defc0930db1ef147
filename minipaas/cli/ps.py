"""An app's processes: ps, ps:scale, resource:limit, ps:restart/stop/start, logs, run, enter."""

from __future__ import annotations

import os
import sys

import click

from minipaas.cli.common import current_host, existing_app, print_json, printable, say, table, when


@click.command("ps")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def ps_show(app: str, as_json: bool) -> None:
    """An app's containers, their state and health."""
    from minipaas.running import listing, processes

    rows = processes.status(current_host(), existing_app(app))
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    def state(r: listing.Row) -> str:
        return r.state if r.state != "crashed" else f"crashed (exit {r.exit_code})"

    if any(r.task is not None for r in rows):  # a cluster's tasks: which node runs each, its address is node:port
        table(([r.name, r.release, state(r), r.node or "-", r.health, r.address or "-"]
               for r in rows), ["TASK", "RELEASE", "STATE", "NODE", "HEALTH", "ADDRESS"])
    else:
        table(([r.name, r.release, state(r), r.health, r.address or "-"] for r in rows),
              ["CONTAINER", "RELEASE", "STATE", "HEALTH", "ADDRESS"])
    from minipaas.deploy import canaryguard
    from minipaas.running import sleeping
    from minipaas.state import canaries

    for line in sleeping.describe(current_host(), app, when=when):
        say(line)

    if (running := canaries.of(current_host(), app)) is not None:
        for line in canaryguard.describe(current_host(), running):
            say(line)
    for row in rows:
        if row.state == "crashed":
            say(f"=====> {row.name} crashed with exit code {row.exit_code} after {row.restarts} restarts; "
                "its last lines:")
            for line in row.last_lines:
                say(f"       {printable(line)}")


@click.command("ps:scale")
@click.argument("app")
@click.argument("counts", nargs=-1)
def ps_scale(app: str, counts: tuple[str, ...]) -> None:
    """Show or set how many containers of each process type run (`ps:scale APP web=3 worker=1`)."""
    from minipaas.deploy import formation
    from minipaas.running import scaling
    from minipaas.state import releaselog

    host = current_host()
    existing_app(app)
    if not counts:
        current = releaselog.live(host, app)
        commit = formation.read(host, app, current.sha) if current else None
        for process, count in formation.counts(host, app, commit).items():
            say(f"{process}={count}")
        return
    scaling.scale(host, app, list(counts), say)


@click.command("resource:limit")
@click.argument("app")
@click.option("--memory", help="e.g. 256m, 1g")
@click.option("--cpus", help="e.g. 0.5; empty for no limit")
@click.option("--pids", help="most processes and threads")
@click.option("--read-only/--writable", "read_only", default=None,
              help="a read-only root filesystem with a writable /tmp")
def resource_limit(app: str, memory: str | None, cpus: str | None, pids: str | None, read_only: bool | None) -> None:
    """Limit an app's containers; running ones are replaced without downtime. A service: `postgres:NAME`."""
    from minipaas.deploy import rollout
    from minipaas.state import apps, releaselog

    host = current_host()
    changes = {"memory": memory, "cpus": cpus, "pids": pids,
               "read-only": None if read_only is None else ("on" if read_only else "off")}
    changes = {k: v for k, v in changes.items() if v is not None}
    if ":" in app:
        _service_limit(app, changes)
        return
    existing_app(app)
    if not changes:
        for key in ("memory", "cpus", "pids", "read-only"):
            say(f"{key}: {apps.get_setting(host, app, key) or 'unlimited'}")
        return
    for key, value in changes.items():  # all checked before any is stored
        apps.check_setting(key, value)
    for key, value in changes.items():
        apps.set_setting(host, app, key, value)
    say(f"-----> {app}: {', '.join(f'{k}={v or chr(39) * 2}' for k, v in changes.items())}")
    if releaselog.live(host, app) is not None:
        rollout.restart(host, app, say)


def _service_limit(target: str, changes: dict[str, str]) -> None:
    """`resource:limit postgres:db --memory 512m`: the service's container is made again with them (its
    data stays in its volume; its apps wait for it a few seconds)."""
    from minipaas.addons import addons as service_ops
    from minipaas.errors import InvalidInput
    from minipaas.state import services

    kind, _, name = target.partition(":")
    services.kind_of(kind)
    service = services.require(current_host(), kind, name)
    if "read-only" in changes:
        raise InvalidInput("a service's filesystem holds its data: --read-only is for apps")
    if not changes:
        for key in ("memory", "cpus", "pids"):
            say(f"{key}: {services.get_setting(current_host(), kind, service.name, key) or 'unlimited'}")
        return
    service_ops.set_limits(current_host(), kind, name, changes, say)


@click.command("ps:restart")
@click.argument("app")
def ps_restart(app: str) -> None:
    """Replace an app's containers with fresh ones, without downtime."""
    from minipaas.deploy import rollout

    rollout.restart(current_host(), existing_app(app), say)


@click.command("ps:stop")
@click.argument("app")
def ps_stop(app: str) -> None:
    """Stop an app's containers (it answers 503 until ps:start)."""
    from minipaas.running import processes

    processes.stop(current_host(), existing_app(app), say)


@click.command("ps:start")
@click.argument("app")
def ps_start(app: str) -> None:
    """Start a stopped app again (new containers from its image where they are gone); wake a sleeping one."""
    from minipaas.running import restore

    restore.start(current_host(), existing_app(app), say)


@click.command("logs")
@click.argument("app")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines")
@click.option("-n", "--num", "lines", type=click.IntRange(0, 1_000_000), default=100, show_default=True)
def logs_cmd(app: str, follow: bool, lines: int) -> None:
    """Show an app's container logs."""
    from minipaas.running import processes

    out = sys.stdout.buffer
    if follow:
        _exit_when_reader_leaves()
    try:
        for chunk in processes.logs(current_host(), existing_app(app), lines=lines, follow=follow):
            out.write(chunk)
            out.flush()
    except BrokenPipeError:
        os._exit(0)  # the reader went away (head, a closed ssh session): nothing left to do


def _exit_when_reader_leaves() -> None:
    """`logs -f` over ssh: end when the client goes away, even while the app writes nothing.

    Waiting on the next log line alone would leave this process (and its docker stream) behind
    after the client disconnects; a hang-up on our stdout ends it at once.
    """
    import select
    import signal
    import threading

    signal.signal(signal.SIGHUP, lambda *_: os._exit(0))
    fd = sys.stdout.fileno()

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLERR | select.POLLHUP)
        while True:
            for _, event in poller.poll():
                if event & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("app")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_cmd(app: str, command: tuple[str, ...]) -> None:
    """Run a one-off command in a new container of the app (`run APP -- CMD ...`)."""
    from minipaas.running import oneoff

    args = list(command[1:] if command and command[0] == "--" else command)
    sys.exit(oneoff.run(current_host(), existing_app(app), args))


@click.command("enter", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("app")
@click.argument("process", default="web")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def enter_cmd(app: str, process: str, command: tuple[str, ...]) -> None:
    """Open a shell (or run COMMAND) in a running container of the app."""
    from minipaas.running import oneoff

    args = list(command[1:] if command and command[0] == "--" else command)
    sys.exit(oneoff.enter(current_host(), existing_app(app), process, args))
