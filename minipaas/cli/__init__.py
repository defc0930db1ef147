"""The `minipaas` command: parses arguments, calls the library, prints results.

Commands follow dokku's `noun:verb` style. Every user error is a MinipaasError, turned into one
line on stderr and exit code 1 in `main`; nothing here decides anything the library should.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import unicodedata
from collections.abc import Iterable
from typing import Any

import click

from minipaas.errors import MinipaasError
from minipaas.progress import Lines

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Progress and results on stdout; a reader that goes away (`| head -1`) never stops the command.
say = Lines()


def _host() -> Any:
    from minipaas.state.host import current

    return current()


def _app(name: str) -> str:
    from minipaas.state import apps

    return apps.require(_host(), name)


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def printable(text: str) -> str:
    """Text as one line that shows what it holds: control and format characters (newlines, terminal
    escapes, bidi overrides) are written as escapes, so stored text (a command received over ssh, a
    commit message) can neither forge rows of a table nor drive the terminal."""
    return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN_CATEGORIES else ch for ch in text)


_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _NAMED_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _table(rows: Iterable[Iterable[object]], headers: list[str]) -> None:
    """Columns padded to their widest cell; every cell printable (see `printable`): the one place a
    table's cells are written."""
    rows = [[printable(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _iso(ts: float | None) -> str:
    """ISO 8601, in UTC: `2026-11-26T02:40:12+00:00`."""
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


class ColonGroup(click.Group):
    """Lists commands in definition order, the way dokku's help does."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=ColonGroup, context_settings=CONTEXT)
@click.version_option(package_name="minipaas")
def cli() -> None:
    """minipaas: git push to deploy, on one host."""


# -- host ----------------------------------------------------------------------------------

@cli.command("init")
def init_cmd() -> None:
    """Create or upgrade this host's state, nginx and network for the current settings."""
    from minipaas.deploy import hostsetup

    hostsetup.init(say)


@cli.command("stack:build")
@click.option("--node", "node", default=None, metavar="RANGE",
              help="Node.js version or range: 20, 20.17.x, ^20.3, lts/iron, lts/* (default: the host's major)")
@click.option("--force", is_flag=True, help="Rebuild even when the image exists")
def stack_build(node: str | None, force: bool) -> None:
    """Provide the base image minipaas/node:VERSION for the newest release that satisfies RANGE."""
    from minipaas.build import stacks

    say(stacks.build(_host().settings, node, say, force=force))


@cli.command("stack:list")
@click.option("--json", "as_json", is_flag=True)
def stack_list(as_json: bool) -> None:
    """Base images on this host, and the apps whose kept releases are built on them."""
    from minipaas.build import stacks

    host = _host()
    rows = stacks.listing(str(host.settings.home))
    if as_json:
        _print_json(rows)
        return
    _table(([r["image"], " ".join(r["also"]) or "-", f"{int(r['size']) / 1e6:.0f} MB",
             _used_by(r["apps"], int(r["other_apps"]))] for r in rows), ["IMAGE", "ALSO", "SIZE", "USED BY"])


def _used_by(apps: list[str], others: int) -> str:
    text = ", ".join(apps)
    if others:
        text += f"{' + ' if text else ''}{others} app{'s' if others > 1 else ''} of other homes"
    return text or "-"


# -- apps ----------------------------------------------------------------------------------

@cli.command("apps:create")
@click.argument("app")
def apps_create(app: str) -> None:
    """Create an app: its git repository, default domain and vhost."""
    from minipaas.deploy import lifecycle
    from minipaas.state import apps

    host = _host()
    lifecycle.create(host, app)
    say(f"-----> Created {app}")
    say(f"       git remote add paas {host.settings.repo_path(app)}")
    say(f"       served at http://{apps.default_domain(host, app)}/ once pushed")


@cli.command("apps:list")
@click.option("--json", "as_json", is_flag=True)
def apps_list(as_json: bool) -> None:
    """List apps."""
    from minipaas.state import apps, releaselog

    host = _host()
    from minipaas.access import access

    rows = []
    for name in filter(access.visible, apps.names(host)):
        rel = releaselog.live(host, name)
        rows.append({"name": name, "release": rel.number if rel else None, "sha": rel.sha if rel else None})
    if as_json:
        _print_json(rows)
        return
    _table(([r["name"], r["release"] or "-", (r["sha"] or "-")[:7]] for r in rows), ["APP", "RELEASE", "SHA"])


@cli.command("apps:destroy")
@click.argument("app")
@click.option("--force", is_flag=True, help="Really destroy: containers, images, repo and vhost")
def apps_destroy(app: str, force: bool) -> None:
    """Destroy an app and everything it owns (asks for --force)."""
    from minipaas.deploy import lifecycle

    _app(app)
    if not force:
        raise MinipaasError(f"destroying {app} removes its containers, images, repository and vhost; "
                            f"run `minipaas apps:destroy {app} --force` to do it")
    lifecycle.destroy(_host(), app, lambda line: say(f"       {line}"))
    say(f"-----> Destroyed {app}")


@cli.command("settings")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def settings_show(app: str, as_json: bool) -> None:
    """Show an app's settings (deploy branch, health check, drain delay, memory)."""
    from minipaas.state import apps

    values = apps.all_settings(_host(), _app(app))
    if as_json:
        _print_json(values)
        return
    _table(values.items(), ["SETTING", "VALUE"])


@cli.command("settings:set")
@click.argument("app")
@click.argument("key")
@click.argument("value")
def settings_set(app: str, key: str, value: str) -> None:
    """Change one of an app's settings."""
    from minipaas.deploy import rollback
    from minipaas.state import apps

    if key == "static-dir":  # checked against the live build, and served from it at once when it can be
        rollback.change_static_dir(_host(), _app(app), value, say)
    else:
        apps.set_setting(_host(), _app(app), key, value)
    say(f"-----> {app}: {key} = {value}")


# -- config --------------------------------------------------------------------------------

@cli.command("config")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
@click.option("--shell", is_flag=True, help="As shell-quoted KEY=VALUE lines")
def config_show(app: str, as_json: bool, shell: bool) -> None:
    """Show an app's config."""
    import shlex

    from minipaas.access import access
    from minipaas.state import config

    values = config.get_all(_host(), _app(app))
    if access.hides_config_values():
        values = {key: "<hidden>" for key in values}
    if as_json:
        _print_json(values)
    elif shell:
        for key, value in values.items():
            say(f"{key}={shlex.quote(value)}")
    else:
        say(f"=====> {app} config")
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            say(f"{key + ':':<{width + 1}}  {value}")


@cli.command("config:get")
@click.argument("app")
@click.argument("key")
def config_get(app: str, key: str) -> None:
    """Print one config value exactly as stored."""
    from minipaas.errors import NotFound
    from minipaas.state import config
    from minipaas.state.names import check_env_key

    values = config.get_all(_host(), _app(app))
    if check_env_key(key) not in values:
        raise NotFound(f"{app} has no config key {key}")
    click.echo(values[key])


@cli.command("config:set")
@click.argument("app")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--no-restart", is_flag=True, help="Store only; the next release picks it up")
def config_set(app: str, assignments: tuple[str, ...], no_restart: bool) -> None:
    """Set config values (KEY=VALUE ...) and roll out a release with them."""
    from minipaas.deploy import rollout
    from minipaas.state import config
    from minipaas.state.names import parse_assignment

    host = _host()
    _app(app)
    values = dict(parse_assignment(a) for a in assignments)
    rollout.change_config(host, app, lambda: config.set_many(host, app, values), say, restart=not no_restart)
    say(f"-----> Set {', '.join(values)} on {app}")


@cli.command("config:unset")
@click.argument("app")
@click.argument("keys", nargs=-1, required=True)
@click.option("--no-restart", is_flag=True)
def config_unset(app: str, keys: tuple[str, ...], no_restart: bool) -> None:
    """Remove config values and roll out a release without them."""
    from minipaas.deploy import rollout
    from minipaas.state import config

    host = _host()
    _app(app)
    rollout.change_config(host, app, lambda: config.unset_many(host, app, list(keys)), say,
                           restart=not no_restart)
    say(f"-----> Unset {', '.join(keys)} on {app}")


# -- domains -------------------------------------------------------------------------------

@cli.command("domains")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def domains_list(app: str, as_json: bool) -> None:
    """List an app's domains."""
    from minipaas.routing import domains

    found = domains.of(_host(), _app(app))
    if as_json:
        _print_json(found)
        return
    for domain in found:
        say(domain)


@cli.command("domains:add")
@click.argument("app")
@click.argument("domain")
def domains_add(app: str, domain: str) -> None:
    """Serve an app at one more domain."""
    from minipaas.routing import domains

    domains.add(_host(), _app(app), domain)
    say(f"-----> Added {domain.lower()} to {app}")


@cli.command("domains:remove")
@click.argument("app")
@click.argument("domain")
def domains_remove(app: str, domain: str) -> None:
    """Stop serving an app at a domain."""
    from minipaas.routing import domains

    domains.remove(_host(), _app(app), domain)
    say(f"-----> Removed {domain.lower()} from {app}")


# -- processes -----------------------------------------------------------------------------

@cli.command("ps")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def ps_show(app: str, as_json: bool) -> None:
    """An app's containers, their state and health."""
    from minipaas.deploy import processes

    rows = processes.status(_host(), _app(app))
    if as_json:
        _print_json(rows)
        return
    _table(([r["name"], r["release"], r["state"] if r["state"] != "crashed" else f"crashed (exit {r['exit_code']})",
             r["health"], r["address"] or "-"] for r in rows),
           ["CONTAINER", "RELEASE", "STATE", "HEALTH", "ADDRESS"])
    for row in rows:
        if row["state"] == "crashed":
            say(f"=====> {row['name']} crashed with exit code {row['exit_code']} after {row['restarts']} restarts; "
                "its last lines:")
            for line in row["last_lines"]:  # type: ignore[attr-defined]
                say(f"       {printable(line)}")


@cli.command("ps:scale")
@click.argument("app")
@click.argument("counts", nargs=-1)
def ps_scale(app: str, counts: tuple[str, ...]) -> None:
    """Show or set how many containers of each process type run (`ps:scale APP web=3 worker=1`)."""
    from minipaas.deploy import formation, scaling
    from minipaas.state import releaselog

    host = _host()
    _app(app)
    if not counts:
        current = releaselog.live(host, app)
        procs = formation.procfile(host, app, current.sha) if current else {}
        for process, count in formation.counts(host, app, procs).items():
            say(f"{process}={count}")
        return
    scaling.scale(host, app, list(counts), say)


@cli.command("resource:limit")
@click.argument("app")
@click.option("--memory", help="e.g. 256m, 1g")
@click.option("--cpus", help="e.g. 0.5; empty for no limit")
@click.option("--pids", help="most processes and threads")
@click.option("--read-only/--writable", "read_only", default=None,
              help="a read-only root filesystem with a writable /tmp")
def resource_limit(app: str, memory: str | None, cpus: str | None, pids: str | None, read_only: bool | None) -> None:
    """Limit an app's containers; running ones are replaced without downtime."""
    from minipaas.deploy import rollout
    from minipaas.state import apps, releaselog

    host = _host()
    _app(app)
    changes = {"memory": memory, "cpus": cpus, "pids": pids,
               "read-only": None if read_only is None else ("on" if read_only else "off")}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        for key in ("memory", "cpus", "pids", "read-only"):
            say(f"{key}: {apps.get_setting(host, app, key) or 'unlimited'}")
        return
    for key, value in changes.items():
        apps.set_setting(host, app, key, value)
    say(f"-----> {app}: {', '.join(f'{k}={v or chr(39) * 2}' for k, v in changes.items())}")
    if releaselog.live(host, app) is not None:
        rollout.restart(host, app, say)


@cli.command("ps:restart")
@click.argument("app")
def ps_restart(app: str) -> None:
    """Replace an app's containers with fresh ones, without downtime."""
    from minipaas.deploy import rollout

    rollout.restart(_host(), _app(app), say)


@cli.command("ps:stop")
@click.argument("app")
def ps_stop(app: str) -> None:
    """Stop an app's containers (it answers 503 until ps:start)."""
    from minipaas.deploy import processes

    processes.stop(_host(), _app(app), say)


@cli.command("ps:start")
@click.argument("app")
def ps_start(app: str) -> None:
    """Start a stopped app again."""
    from minipaas.deploy import processes

    processes.start(_host(), _app(app), say)


@cli.command("ps:restore")
def ps_restore() -> None:
    """Bring every app back to its recorded state (after a reboot or a dockerd restart)."""
    from minipaas.deploy import restore

    restore.restore(_host(), say)


@cli.command("logs")
@click.argument("app")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines")
@click.option("-n", "--num", "lines", type=click.IntRange(0, 1_000_000), default=100, show_default=True)
def logs_cmd(app: str, follow: bool, lines: int) -> None:
    """Show an app's container logs."""
    from minipaas.deploy import processes

    out = sys.stdout.buffer
    if follow:
        _exit_when_reader_leaves()
    try:
        for chunk in processes.logs(_host(), _app(app), lines=lines, follow=follow):
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


# -- releases ------------------------------------------------------------------------------

@cli.command("releases")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def releases_list(app: str, as_json: bool) -> None:
    """An app's releases, newest first."""
    from minipaas.state import releaselog

    found = releaselog.listing(_host(), _app(app))
    if as_json:
        _print_json([r.as_dict() for r in found])
        return
    _table(([r.number, r.kind, r.sha[:7], r.buildpack or "-", r.status, r.pusher, _when(r.created_at),
             r.message[:60]] for r in found),
           ["RELEASE", "KIND", "SHA", "BUILDPACK", "STATUS", "BY", "CREATED", "MESSAGE"])


@cli.command("releases:info")
@click.argument("app")
@click.argument("number", type=int)
def releases_info(app: str, number: int) -> None:
    """One release, with its build log."""
    from minipaas.state import releaselog

    host = _host()
    rel = releaselog.get(host, _app(app), number)
    for key, value in rel.as_dict().items():
        if key in ("created_at", "finished_at"):
            value = _iso(value)  # type: ignore[arg-type]
        say(f"{key + ':':<13} {value}")
    log = releaselog.build_log(host, app, number)
    if log:
        say("build log:")
        say(log)


@cli.command("releases:rollback")
@click.argument("app")
@click.argument("number", type=int, required=False)
def releases_rollback(app: str, number: int | None) -> None:
    """Go back to an earlier release (default: the previous one), with its config of that time."""
    from minipaas.deploy import rollback

    rollback.rollback(_host(), _app(app), number, say)


@cli.command("gc")
@click.argument("app", required=False)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed")
def gc_cmd(app: str | None, dry_run: bool) -> None:
    """Remove old release images, exited containers, old site directories (keeps the last 5) and unused
    base images."""
    from minipaas.deploy import gc

    gc.collect(_host(), dry_run=dry_run, only=_app(app) if app else None, progress=say)


@cli.command("report")
@click.option("--json", "as_json", is_flag=True)
def report_cmd(as_json: bool) -> None:
    """Disk used per app and in total; the builder and how build limits are enforced."""
    from minipaas.build import builds
    from minipaas.deploy import gc

    rows = gc.report(_host())
    if as_json:
        _print_json(rows)
        return
    for line in builds.describe(_host().settings):
        say(line)
    mb = 1024 * 1024
    _table(([r["app"], r["images"], f"{r['image_bytes'] / mb:.1f}", f"{r['site_bytes'] / mb:.1f}",
             f"{r['repo_bytes'] / mb:.1f}"] for r in rows), ["APP", "IMAGES", "IMAGES MB", "SITE MB", "REPO MB"])
    total = sum(int(r["image_bytes"]) + int(r["site_bytes"]) + int(r["repo_bytes"]) for r in rows)  # type: ignore[call-overload]
    say(f"total: {total / mb:.1f} MB (images: what each adds beyond the layers it shares)")


@cli.command("deploy")
@click.argument("app")
@click.argument("rev", required=False)
@click.option("--verbose", is_flag=True, help="Show every line the builder prints")
def deploy_cmd(app: str, rev: str | None, verbose: bool) -> None:
    """Build and deploy a commit of the app's repository (default: the last one pushed, even if rejected)."""
    from minipaas.adapters import gitrepo
    from minipaas.deploy import rollout
    from minipaas.state import releaselog

    host = _host()
    repo = host.settings.repo_path(_app(app))
    sha = gitrepo.resolve(repo, rev) if rev else releaselog.last_pushed(host, app) or gitrepo.resolve(repo, "HEAD")
    if verbose:
        os.environ["MINIPAAS_VERBOSE"] = "1"
    rollout.deploy_commit(host, app, sha, say)


@cli.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("app")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_cmd(app: str, command: tuple[str, ...]) -> None:
    """Run a one-off command in a new container of the app (`run APP -- CMD ...`)."""
    from minipaas.deploy import oneoff

    args = list(command[1:] if command and command[0] == "--" else command)
    sys.exit(oneoff.run(_host(), _app(app), args))


@cli.command("enter", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("app")
@click.argument("process", default="web")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def enter_cmd(app: str, process: str, command: tuple[str, ...]) -> None:
    """Open a shell (or run COMMAND) in a running container of the app."""
    from minipaas.deploy import oneoff

    args = list(command[1:] if command and command[0] == "--" else command)
    sys.exit(oneoff.enter(_host(), _app(app), process, args))


# -- TLS -----------------------------------------------------------------------------------

def _show_cert(app: str, cert: Any) -> None:
    say(f"=====> {app} certificate")
    say(f"subject:   {cert.subject}")
    say(f"issuer:    {cert.issuer}{' (self-signed)' if cert.self_signed else ''}")
    say(f"names:     {', '.join(cert.sans) or '-'}")
    say(f"expires:   {cert.not_after:%Y-%m-%d %H:%M} UTC ({cert.days_left} days left)")


@cli.command("certs")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def certs_show(app: str, as_json: bool) -> None:
    """Show an app's certificate: subject, names, expiry."""
    from minipaas.routing import certs

    cert = certs.info(_host(), _app(app))
    if as_json:
        _print_json(cert.as_dict())
        return
    _show_cert(app, cert)


@cli.command("certs:add")
@click.argument("app")
@click.argument("cert_file", type=click.Path(dir_okay=False, readable=True))
@click.argument("key_file", type=click.Path(dir_okay=False, readable=True))
def certs_add(app: str, cert_file: str, key_file: str) -> None:
    """Serve an app over HTTPS with a certificate (chain) and its private key."""
    from minipaas.routing import certs

    host, name = _host(), _app(app)
    cert = certs.install(host, name, certs.read_pem(cert_file, "certificate"), certs.read_pem(key_file, "key"))
    _show_cert(app, cert)


@cli.command("certs:generate")
@click.argument("app")
def certs_generate(app: str) -> None:
    """Serve an app over HTTPS with a new self-signed certificate for its domains."""
    from minipaas.routing import certs

    _show_cert(app, certs.generate(_host(), _app(app)))


@cli.command("certs:remove")
@click.argument("app")
def certs_remove(app: str) -> None:
    """Stop serving an app over HTTPS."""
    from minipaas.routing import certs

    certs.remove(_host(), _app(app))
    say(f"-----> Removed the certificate of {app}")


@cli.command("letsencrypt:enable")
@click.argument("app")
def letsencrypt_enable(app: str) -> None:
    """Get a certificate for an app's domains from Let's Encrypt (ACME HTTP-01) and keep it renewed."""
    from minipaas.routing import acme

    _show_cert(app, acme.enable(_host(), _app(app), say))


@cli.command("letsencrypt:disable")
@click.argument("app")
def letsencrypt_disable(app: str) -> None:
    """Stop renewing an app's certificate (it keeps serving; certs:remove removes it)."""
    from minipaas.routing import acme

    acme.disable(_host(), _app(app))
    say(f"-----> {app} will no longer be renewed by letsencrypt:renew")


@cli.command("letsencrypt:renew")
@click.option("--force", is_flag=True, help="Renew even certificates that are far from expiry")
def letsencrypt_renew(force: bool) -> None:
    """Renew the certificates of apps with letsencrypt on that expire within 30 days."""
    from minipaas.routing import acme

    results = acme.renew(_host(), say, force=force)
    if not results:
        say("-----> No app has letsencrypt on: nothing to renew")
        return
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in ("renewed", "skipped", "failed")}
    say(f"=====> {counts['renewed']} renewed, {counts['skipped']} skipped, {counts['failed']} failed")
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        raise MinipaasError(f"could not renew {', '.join(r.app for r in failed)}: {failed[0].reason}"
                            + (" (and more, see above)" if len(failed) > 1 else ""))


# -- ssh access ----------------------------------------------------------------------------

@cli.command("ssh-keys:add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "deployer"]), default="admin", show_default=True)
def ssh_keys_add(name: str, role: str) -> None:
    """Allow a public key (read from stdin) to reach minipaas over ssh."""
    from minipaas.access import keys

    if sys.stdin.isatty():
        raise MinipaasError(f"pipe the public key in: minipaas ssh-keys:add {name} < {name}.pub")
    record = keys.add(_host(), name, role, sys.stdin.read(keys.MAX_KEY_LINE + 1))
    say(f"-----> Added {record.name} ({record.role}) {record.fingerprint}")


@cli.command("ssh-keys:remove")
@click.argument("name")
def ssh_keys_remove(name: str) -> None:
    """Remove a key: it can no longer reach minipaas."""
    from minipaas.access import keys

    keys.remove(_host(), name)
    say(f"-----> Removed {name}")


@cli.command("ssh-keys:list")
@click.option("--json", "as_json", is_flag=True)
def ssh_keys_list(as_json: bool) -> None:
    """Keys, their fingerprints, roles and grants."""
    from minipaas.access import keys

    found = keys.listing(_host())
    if as_json:
        _print_json([r.__dict__ for r in found])
        return
    _table(([r.name, r.role, r.fingerprint, ",".join(r.apps) or ("*" if r.role == "admin" else "-")]
            for r in found), ["NAME", "ROLE", "FINGERPRINT", "APPS"])


@cli.command("ssh-keys:grant")
@click.argument("name")
@click.argument("app")
def ssh_keys_grant(name: str, app: str) -> None:
    """Let a deployer key push to an app and read its state."""
    from minipaas.access import keys

    keys.grant(_host(), name, app)
    say(f"-----> {name} may now deploy {app}")


@cli.command("ssh-keys:revoke")
@click.argument("name")
@click.argument("app")
def ssh_keys_revoke(name: str, app: str) -> None:
    """Take a deployer's grant on an app away."""
    from minipaas.access import keys

    keys.revoke(_host(), name, app)
    say(f"-----> {name} may no longer deploy {app}")


@cli.command("events")
@click.argument("app", required=False)
@click.option("-n", "--num", "limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def events_cmd(app: str | None, limit: int, as_json: bool) -> None:
    """The audit log of commands received over ssh (config values redacted)."""
    from minipaas.access import events
    from minipaas.state.names import check_app

    if app:
        check_app(app)  # a destroyed app's events stay readable
    found = events.listing(_host(), app, limit)
    if as_json:
        _print_json(found)
        return
    _table(([_when(e["at"]), e["user"], e["app"] or "-", e["outcome"], str(e["command"])[:80]] for e in found),
           ["WHEN", "USER", "APP", "OUTCOME", "COMMAND"])


@cli.command("ssh-command", hidden=True)
@click.option("--user", "users", multiple=True, required=True)
def ssh_command(users: tuple[str, ...]) -> None:
    """Entry point forced by authorized_keys: runs SSH_ORIGINAL_COMMAND as that key's user."""
    from minipaas.ssh import sshentry

    # Exactly the shape authorized_keys gives (and sudoers lets through): click alone would keep the
    # last of several --user, which a looser sudo rule once let a deployer add after its own.
    if len(users) != 1:
        raise MinipaasError("ssh-command takes exactly one --user NAME")
    # The entry sits below the CLI: it gets the commands and their runner from here.
    sshentry.run(users[0], cli, main)


@cli.command("sudoers-rule", hidden=True)
@click.option("--account", default="paas", show_default=True, help="The ssh account the keys log in as")
@click.option("--program", default="/usr/local/bin/minipaas", show_default=True, help="minipaas, as sudo runs it")
def sudoers_rule(account: str, program: str) -> None:
    """Print the sudoers rule of the ssh account (install.sh installs it in /etc/sudoers.d/minipaas)."""
    from minipaas.access import sudoers

    click.echo(sudoers.rule(account, program), nl=False)


@cli.command("watch", hidden=True)
def watch_cmd() -> None:
    """Follow the engine's events: a routed container that goes away leaves its app's route at once."""
    from minipaas.deploy import watcher

    watcher.run(_host().settings)


@cli.command("retire", hidden=True)
@click.argument("app")
def retire_cmd(app: str) -> None:
    """Retire the app's old containers once drained (run in the background after a deploy)."""
    from minipaas.deploy import gc, retirement

    host = _host()
    retirement.retire(host, app, wait=True)
    # After every deploy, in the background: the retention rule keeps the disk from filling up.
    gc.collect(host, dry_run=False, only=app, progress=say)


def _remote_for(args: list[str]) -> Any:
    """The ssh remote to send this command to, when run from an app's checkout on a laptop."""
    if not args or args[0] in ("ssh-command", "sudoers-rule", "retire", "init", "--help", "-h", "--version"):
        return None
    from minipaas.ssh import remote
    from minipaas.state.settings import load

    return remote.should_use(local_state_exists=load().db_path.exists())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the one place where errors become messages and exit codes."""
    from minipaas.state import perms

    # Before anything is written: what this process creates is root's alone (the retirer, the
    # ssh entry and every command come through here; files nginx reads get explicit modes).
    perms.restrict_umask()
    try:
        args = sys.argv[1:] if argv is None else argv
        remote = _remote_for(args)
        if remote is not None:
            from minipaas.ssh import remote as remote_client

            sys.exit(remote_client.run(remote, args, cli.commands))
        cli.main(args=args, prog_name="minipaas", standalone_mode=False)
    except MinipaasError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.detail:
            click.echo(exc.detail.rstrip(), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "minipaas"
        click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line; the traceback only on request
        if os.environ.get("MINIPAAS_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set MINIPAAS_DEBUG=1 for details)", err=True)
        sys.exit(70)
    sys.exit(0)
