"""Domains and TLS: domains:*, certs:*, letsencrypt:*."""

from __future__ import annotations

from typing import Any

import click

from minipaas.cli.common import current_host, existing_app, print_json, printable, say
from minipaas.errors import MinipaasError


@click.command("domains")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def domains_list(app: str, as_json: bool) -> None:
    """List an app's domains."""
    from minipaas.routing import domains

    found = domains.of(current_host(), existing_app(app))
    if as_json:
        print_json(found)
        return
    for domain in found:
        say(domain)


@click.command("domains:add")
@click.argument("app")
@click.argument("domain")
def domains_add(app: str, domain: str) -> None:
    """Serve an app at one more domain."""
    from minipaas.routing import domains

    domains.add(current_host(), existing_app(app), domain)
    say(f"-----> Added {domain.lower()} to {app}")


@click.command("domains:remove")
@click.argument("app")
@click.argument("domain")
def domains_remove(app: str, domain: str) -> None:
    """Stop serving an app at a domain."""
    from minipaas.routing import domains

    domains.remove(current_host(), existing_app(app), domain)
    say(f"-----> Removed {domain.lower()} from {app}")


DASHBOARD = "@dashboard"  # what certs:* and letsencrypt:* take for the dashboard: routing/proxy.DASHBOARD_TARGET


def _cert_target(app: str) -> str:
    """The app a certs:* or letsencrypt:* command is for, or the dashboard's vhost (`@dashboard`)."""
    if app == DASHBOARD:
        from minipaas.routing import proxy

        return proxy.DASHBOARD_SITE
    return existing_app(app)


def _show_cert(app: str, cert: Any) -> None:
    # A certificate's names are whatever its maker wrote: shown escaped, one line each.
    say(f"=====> {app} certificate")
    say(f"subject:   {printable(cert.subject)}")
    say(f"issuer:    {printable(cert.issuer)}{' (self-signed)' if cert.self_signed else ''}")
    say(f"names:     {printable(', '.join(cert.sans)) or '-'}")
    say(f"expires:   {cert.not_after:%Y-%m-%d %H:%M} UTC ({cert.days_left} days left)")


@click.command("certs")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def certs_show(app: str, as_json: bool) -> None:
    """Show an app's certificate (`@dashboard`: the dashboard's): subject, names, expiry."""
    from minipaas.routing import certs

    cert = certs.info(current_host(), _cert_target(app))
    if as_json:
        print_json(cert.as_dict())
        return
    _show_cert(app, cert)


@click.command("certs:add")
@click.argument("app")
@click.argument("cert_file", type=click.Path(dir_okay=False, readable=True))
@click.argument("key_file", type=click.Path(dir_okay=False, readable=True))
def certs_add(app: str, cert_file: str, key_file: str) -> None:
    """Serve an app (`@dashboard`: the dashboard) over HTTPS with a certificate (chain) and its private key."""
    from minipaas.routing import certs

    host, name = current_host(), _cert_target(app)
    cert = certs.install(host, name, certs.read_pem(cert_file, "certificate"), certs.read_pem(key_file, "key"))
    _show_cert(app, cert)


@click.command("certs:generate")
@click.argument("app")
def certs_generate(app: str) -> None:
    """Serve an app (`@dashboard`: the dashboard) over HTTPS with a new self-signed certificate for its domains."""
    from minipaas.routing import certs

    _show_cert(app, certs.generate(current_host(), _cert_target(app)))


@click.command("certs:remove")
@click.argument("app")
def certs_remove(app: str) -> None:
    """Stop serving an app (`@dashboard`: the dashboard) over HTTPS."""
    from minipaas.routing import certs

    certs.remove(current_host(), _cert_target(app))
    say(f"-----> Removed the certificate of {app}")


@click.command("letsencrypt:enable")
@click.argument("app")
def letsencrypt_enable(app: str) -> None:
    """Get a certificate for an app's domains (`@dashboard`: the dashboard's name) from Let's Encrypt (ACME
    HTTP-01) and keep it renewed."""
    from minipaas.routing import acme

    _show_cert(app, acme.enable(current_host(), _cert_target(app), say))


@click.command("letsencrypt:disable")
@click.argument("app")
def letsencrypt_disable(app: str) -> None:
    """Stop renewing an app's (`@dashboard`: the dashboard's) certificate (it keeps serving; certs:remove removes
    it)."""
    from minipaas.routing import acme

    acme.disable(current_host(), _cert_target(app))
    say(f"-----> {app} will no longer be renewed by letsencrypt:renew")


@click.command("letsencrypt:renew")
@click.option("--force", is_flag=True, help="Renew even certificates that are far from expiry")
def letsencrypt_renew(force: bool) -> None:
    """Renew the certificates of apps (and the dashboard) with letsencrypt on that expire within 30 days."""
    from minipaas.routing import acme

    results = acme.renew(current_host(), say, force=force)
    if not results:
        say("-----> No app has letsencrypt on: nothing to renew")
        return
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in ("renewed", "skipped", "failed")}
    say(f"=====> {counts['renewed']} renewed, {counts['skipped']} skipped, {counts['failed']} failed")
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        _cert_expiring(failed)
        raise MinipaasError(f"could not renew {', '.join(r.app for r in failed)}: {failed[0].reason}"
                            + (" (and more, see above)" if len(failed) > 1 else ""))


def _cert_expiring(failed: list) -> None:  # type: ignore[type-arg]  (acme.Renewal, imported in the command)
    """A certificate that could not be renewed keeps serving, towards its expiry: the `cert-expiring` event of
    each (for the notifications), with the days it has left."""
    from minipaas.access import events
    from minipaas.errors import NotFound
    from minipaas.routing import certs, proxy

    host = current_host()
    for r in failed:
        site = proxy.DASHBOARD_SITE if r.app.startswith("@") else r.app  # `@dashboard`: the host's own
        try:
            left = f"{certs.info(host, site).days_left} days left"
        except NotFound:
            left = "no certificate yet"
        events.announce(host, "cert-expiring", app="" if r.app.startswith("@") else r.app,
                        command=f"cert-expiring {r.app}", outcome=f"renewal failed ({left}): {r.reason}")
