"""Let's Encrypt (or any ACME CA): certificates obtained and renewed over ACME HTTP-01.

`letsencrypt:enable APP` asks the CA at MINIPAAS_ACME_DIRECTORY for a certificate covering all of
the app's domains (`@dashboard`, `proxy.DASHBOARD_SITE` here: the dashboard's name, `dashboard-domain`; that
it is renewed is a file of its own, `acme/dashboard.letsencrypt`: it is no app with settings). The CA proves
control of each name by fetching
`http://<domain>/.well-known/acme-challenge/<token>`, which nginx serves from `settings.acme_root`
for every app, over plain HTTP, certificate or not. Only a certificate the CA issued is installed
(with `certs.install`): any failure leaves the previous one, if any, serving.

The ACME protocol is spoken by the `acme` library (certbot's). The account key lives in
`MINIPAAS_HOME/acme/account.key` (0600) and the account is reused across runs; each certificate
gets a new EC P-256 key. `letsencrypt:renew` (daily from a systemd timer or cron.d, see
install.sh) issues again what expires within RENEW_DAYS days.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import josepy as jose
import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from minipaas.errors import MinipaasError
from minipaas.progress import Progress
from minipaas.routing import certfiles, certs, proxy
from minipaas.state import apps, locks, perms
from minipaas.state.host import Host
from minipaas.state.settings import Settings

DEADLINE_SECONDS = 90  # validation, finalization and download, together
NETWORK_TIMEOUT = 30  # one request to the ACME server
RENEW_DAYS = 30  # renew certificates that expire in fewer days than this
USER_AGENT = "minipaas (acme-python)"


class AcmeFailed(MinipaasError):
    """The ACME server was unreachable, refused a request, or did not issue a certificate."""


@dataclass(frozen=True)
class Renewal:
    app: str
    outcome: str  # "renewed", "skipped" or "failed"
    reason: str


def account_key_path(settings: Settings) -> Path:
    return settings.layout.acme_dir / "account.key"


def dashboard_flag(settings: Settings) -> Path:
    """Present while the dashboard's certificate is renewed (its `letsencrypt` setting, as an app's is)."""
    return settings.layout.acme_dir / "dashboard.letsencrypt"


def label(app: str) -> str:
    """How the commands name a target: the app, or `@dashboard`."""
    return proxy.DASHBOARD_TARGET if app == proxy.DASHBOARD_SITE else app


def _set_renewed(host: Host, app: str, on: bool) -> None:
    if app != proxy.DASHBOARD_SITE:
        apps.set_setting(host, app, "letsencrypt", "on" if on else "off")
    elif on:
        dashboard_flag(host.settings).parent.mkdir(parents=True, exist_ok=True)
        perms.write_file(dashboard_flag(host.settings), b"on\n", perms.PRIVATE_FILE)
    else:
        dashboard_flag(host.settings).unlink(missing_ok=True)


def renewed(host: Host) -> list[str]:
    """The targets `letsencrypt:renew` issues again: apps with letsencrypt on, then the dashboard when it is."""
    targets = [app for app in apps.names(host) if apps.get_setting(host, app, "letsencrypt") == "on"]
    return targets + ([proxy.DASHBOARD_SITE] if dashboard_flag(host.settings).exists() else [])


# -- commands ------------------------------------------------------------------------------

def enable(host: Host, app: str, progress: Progress) -> certs.CertInfo:
    """Issue a certificate for the app now and keep it renewed (the `letsencrypt` setting)."""
    cert = issue(host, app, progress)
    _set_renewed(host, app, True)
    return cert


def disable(host: Host, app: str) -> None:
    """Stop renewing; the current certificate keeps serving until `certs:remove` or expiry."""
    _set_renewed(host, app, False)


def renew(host: Host, progress: Progress, *, force: bool = False) -> list[Renewal]:
    """Issue again, for every app with letsencrypt on, what is due (or everything, with `force`).

    One app failing does not stop the others; the failures are in the returned list.
    """
    results: list[Renewal] = []
    for app in renewed(host):
        name = label(app)
        try:
            reason = due(host, app, force=force)
            if reason is None:
                days = certs.info(host, app).days_left
                results.append(Renewal(name, "skipped", f"{days} days left"))
                progress(f"-----> {name}: skipped, {days} days left")
                continue
            progress(f"-----> {name}: renewing ({reason})")
            cert = issue(host, app, progress)
        except MinipaasError as exc:
            results.append(Renewal(name, "failed", exc.message))
            progress(f"       {name}: failed: {exc.message}")
            continue
        results.append(Renewal(name, "renewed", f"expires {cert.not_after:%Y-%m-%d}"))
    return results


def due(host: Host, app: str, *, force: bool = False) -> str | None:
    """Why the app's certificate should be issued again, or None when it is fine."""
    if force:
        return "forced"
    if certfiles.paths(host.settings, app) is None:
        return "no certificate"
    cert = certs.info(host, app)
    if cert.days_left < RENEW_DAYS:
        return f"{cert.days_left} days left"
    missing = sorted(set(certs.names(host, app)) - set(cert.sans))
    if missing:
        return f"not covering {', '.join(missing)}"
    return None


# -- issuing -------------------------------------------------------------------------------

def issue(host: Host, app: str, progress: Progress) -> certs.CertInfo:
    """Obtain a certificate for all of the app's domains and install it."""
    settings = host.settings
    if not re.fullmatch(r"https?://\S+", settings.acme_directory):
        raise AcmeFailed(f"MINIPAAS_ACME_DIRECTORY must be an http(s) URL, not {settings.acme_directory!r}")
    names = certs.names(host, app)
    if app == proxy.DASHBOARD_SITE:
        proxy.write_dashboard_site(settings)  # its vhost answers the challenge (ps:restore may not have run yet)
    progress(f"-----> Requesting a certificate for {', '.join(names)} from {settings.acme_directory}")
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    csr_pem = crypto_util.make_csr(key_pem, names)
    with _lock(settings, progress):
        with _translated(settings):
            acme = _client(settings, progress)
            order = _validate_and_finalize(settings, acme, acme.new_order(csr_pem), progress)
        if not order.fullchain_pem:
            raise AcmeFailed(f"the ACME server at {settings.acme_directory} issued no certificate")
        cert = certs.install(host, app, order.fullchain_pem.encode(), key_pem)
    progress(f"-----> Installed the certificate of {label(app)} from {cert.issuer}, "
             f"valid until {cert.not_after:%Y-%m-%d}")
    return cert


def _validate_and_finalize(settings: Settings, acme: client.ClientV2, order: messages.OrderResource,
                           progress: Progress) -> messages.OrderResource:
    written: list[Path] = []
    try:
        for authz in order.authorizations:
            name = authz.body.identifier.value
            if authz.body.status == messages.STATUS_VALID:
                progress(f"       {name}: already validated for this account")
                continue
            challenge = _http01(authz)
            response, validation = challenge.response_and_validation(acme.net.key)
            path = settings.acme_root / challenge.chall.path.lstrip("/")
            _write_challenge(settings, path, validation)
            written.append(path)
            progress(f"       {name}: answering the http-01 challenge")
            acme.answer_challenge(challenge, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=DEADLINE_SECONDS)
        return acme.poll_and_finalize(order, deadline)
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def _http01(authz: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authz.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    raise AcmeFailed(f"the ACME server offers no http-01 challenge for {authz.body.identifier.value}")


def _write_challenge(settings: Settings, path: Path, validation: str) -> None:
    """The token file nginx's workers serve: 0644 in 0755 folders, inside the gated acme/ (perms.py)."""
    perms.served_folder(settings.acme_root)
    folder = settings.acme_root
    for part in path.parent.relative_to(settings.acme_root).parts:
        folder = perms.served_folder(folder / part)
    perms.write_file(path, validation.encode("ascii"), perms.SERVED_FILE)


# -- the account ---------------------------------------------------------------------------

def _client(settings: Settings, progress: Progress) -> client.ClientV2:
    """A client for the configured directory, logged in with this host's account (created if new)."""
    net = client.ClientNetwork(_account_key(settings), alg=jose.ES256,
                               verify_ssl=str(settings.acme_ca) if settings.acme_ca else True,  # type: ignore[arg-type]
                               user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT)
    directory = client.ClientV2.get_directory(settings.acme_directory, net)
    try:
        directory["newAccount"], directory["newOrder"], directory["newNonce"]
    except KeyError:
        raise AcmeFailed(f"{settings.acme_directory} is not an ACME directory") from None
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(email=settings.acme_email or None,
                                                      terms_of_service_agreed=True)
    try:
        account = acme.new_account(registration)
    except acme_errors.ConflictError as exc:  # this key has an account already: use it
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        return acme
    terms = directory.meta.terms_of_service
    progress(f"       registered ACME account {account.uri}"
             + (f", accepting the terms at {terms}" if terms else ""))
    return acme


def _account_key(settings: Settings) -> jose.JWKEC:
    path = account_key_path(settings)
    if path.is_file():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AcmeFailed(f"{path} holds no EC private key; move it away to start a new ACME account")
        return jose.JWKEC(key=key)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    perms.write_file(path, pem, perms.PRIVATE_FILE)
    return jose.JWKEC(key=key)


def _lock(settings: Settings, progress: Progress) -> contextlib.AbstractContextManager[None]:
    """One ACME conversation at a time on this host (the renewal timer and a user's enable)."""
    return locks.held(locks.instance_lock(settings, "acme.orders"), progress=progress,
                      waiting="       waiting for another certificate request to finish...")


# -- errors --------------------------------------------------------------------------------

@contextlib.contextmanager
def _translated(settings: Settings) -> Iterator[None]:
    """ACME and network failures as one line for the user."""
    where = settings.acme_directory
    try:
        yield
    except acme_errors.ValidationError as exc:
        raise AcmeFailed(_validation_message(exc)) from None
    except acme_errors.TimeoutError:
        raise AcmeFailed(f"the ACME server at {where} did not validate and issue within "
                         f"{DEADLINE_SECONDS} s") from None
    except acme_errors.IssuanceError as exc:
        raise AcmeFailed(f"the CA refused to issue the certificate: {_problem(exc.error)}") from None
    except messages.Error as exc:
        raise AcmeFailed(f"the ACME server at {where} refused: {_problem(exc)}") from None
    except acme_errors.ClientError as exc:
        raise AcmeFailed(_client_error(exc, where)) from None
    except acme_errors.Error as exc:
        raise AcmeFailed(f"ACME error with {where}: {_one_line(str(exc)) or type(exc).__name__}") from None
    except requests.exceptions.SSLError as exc:
        raise AcmeFailed(f"cannot verify the TLS certificate of the ACME server at {where} ({_reason(exc)}); "
                         "MINIPAAS_ACME_CA names a CA bundle to trust") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise AcmeFailed(f"cannot reach the ACME server at {where}: {_reason(exc)}") from None
    except requests.exceptions.JSONDecodeError:
        raise AcmeFailed(f"{where} is not an ACME directory (its answer is not JSON)") from None
    except requests.exceptions.RequestException as exc:
        raise AcmeFailed(f"request to the ACME server at {where} failed: {_reason(exc)}") from None
    except jose.DeserializationError as exc:
        raise AcmeFailed(f"unexpected answer from the ACME server at {where}: {_one_line(str(exc))}") from None


def _validation_message(exc: acme_errors.ValidationError) -> str:
    parts = []
    for authz in exc.failed_authzrs:
        name = authz.body.identifier.value
        problems = [_problem(c.error) for c in authz.body.challenges if c.error is not None]
        parts.append(f"{name}: {'; '.join(problems) or 'invalid'}")
    return ("the CA could not validate " + ", ".join(parts)
            + " (the CA must reach this host's nginx over plain HTTP, port 80, at every domain of the app)")


def _problem(error: messages.Error) -> str:
    text = error.detail or error.title or error.description or str(error.typ)
    code = error.code or str(error.typ).rsplit(":", 1)[-1]
    return _one_line(f"{text} ({code})" if code and code not in text else text)


def _client_error(exc: acme_errors.ClientError, where: str) -> str:
    first = exc.args[0] if exc.args else None
    if isinstance(first, tuple) and first:
        first = first[0]
    if isinstance(first, requests.Response):
        if first.url == where:
            return f"{where} answered HTTP {first.status_code}: is it an ACME directory URL?"
        return f"the ACME server at {where} answered HTTP {first.status_code} for {first.url}"
    return f"unexpected answer from the ACME server at {where}: {_one_line(str(exc)) or type(exc).__name__}"


def _reason(exc: BaseException) -> str:
    """The useful end of a requests/urllib3 error: 'Connection refused', 'certificate verify failed: ...'."""
    text = str(exc)
    ssl_error = re.search(r"\[SSL: [A-Z_]+\] ([^(')\"]+)(?:\(([^)]*)\))?", text)
    if ssl_error:
        return _one_line(ssl_error.group(1).strip() + (f" ({ssl_error.group(2)})" if ssl_error.group(2) else ""))
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return _one_line(text) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())
