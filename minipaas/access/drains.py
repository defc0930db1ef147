"""Log drains: which URLs a drain may have, how one is shown, and the text that makes them so.

Pure functions only. An app with drains has its containers log with the engine's `syslog` driver to the host's
shipper (an rsyslogd of this home, listening on a 127.0.0.1 UDP port: `log_config`); the engine keeps
`docker logs` (and so `minipaas logs`) through its dual-logging cache. The shipper forwards each app's records to
its drains (`render`), each through a queue of its own, so a drain that is down or slow never holds the app, a
deploy or another drain. Why UDP to a local shipper and never the driver straight to the drain: the engine's
syslog driver dials a TCP address when the container starts, and the container fails to start when nobody
answers; a UDP send never fails, and the shipper's queues do the retrying.

Each container's records carry a tag APP/PROCESS/RELEASE/CONTAINER (`tag`); the shipper sends them on as RFC 5424
records whose APP-NAME is the app, PROCID the process type, and whose structured data names all four.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from minipaas.access.notify import redacted
from minipaas.errors import InvalidInput
from minipaas.state.names import _show

SCHEMES = {"syslog+tcp": "tcp", "syslog+udp": "udp"}
MAX_URL = 512
MAX_DRAINS = 10  # per app: each is a queue (up to QUEUE records in memory) in the shipper
QUEUE = 10000
RETRY_SECONDS = 10
# The local UDP input's socket buffer: what a burst of lines may hold before rsyslogd reads it. With the kernel's
# default (~200 KiB) a burst of 20 000 lines lost up to 46 % of them to the drain; with 16 MiB none in 3 runs
# (bench/drains_burst.py; `logs APP` keeps them all either way).
RECEIVE_BUFFER = "16m"
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
USAGE = "use syslog+tcp://HOST:PORT or syslog+udp://HOST:PORT"
# Our private enterprise number's stand-in in RFC 5424 structured data (RFC 5612's number for documentation).
SD_ID = "minipaas@32473"


@dataclass(frozen=True)
class Drain:
    url: str
    protocol: str  # tcp | udp
    host: str
    port: int


def shown(url: str) -> str:
    """A drain's URL as it may be printed: any userinfo, path or query (where a token would be) as `…`."""
    return redacted(url)


def parse(url: str) -> Drain:
    """`syslog+tcp://HOST:PORT` or `syslog+udp://HOST:PORT`; anything else is one line that never prints a
    secret the URL may hold. https is refused too: Debian's rsyslog has no omhttp."""
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(f"invalid drain URL {_show(shown(url))}: one line of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"invalid drain URL {_show(shown(url))}: {USAGE}") from None
    scheme = parts.scheme.lower()
    if scheme in ("https", "http"):
        raise InvalidInput(f"https drains are not supported yet (Debian's rsyslog has no HTTP output): "
                           f"{_show(shown(url))}; {USAGE}")
    if scheme not in SCHEMES:
        raise InvalidInput(f"unknown drain URL scheme in {_show(shown(url))}: {USAGE}")
    host = parts.hostname or ""
    if not host or not _host_ok(host):
        raise InvalidInput(f"invalid drain URL {_show(shown(url))}: no host; {USAGE}")
    if not port:
        raise InvalidInput(f"drain URL {_show(shown(url))} has no port: {USAGE}")
    if parts.username is not None or parts.password is not None or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise InvalidInput(f"invalid drain URL {_show(shown(url))}: a syslog drain is HOST:PORT only; {USAGE}")
    return Drain(url=url, protocol=SCHEMES[scheme], host=host, port=port)


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host)) and len(host) <= 253


def tag(app: str, process: str, release: int) -> str:
    """The engine's tag of a container's records (`{{.ID}}`: the engine puts the container's short id in)."""
    return f"{app}/{process}/{release}/{{{{.ID}}}}"


def log_config(app: str, process: str, release: int, port: int) -> dict[str, object]:
    """The engine's log settings for a container of an app with drains: syslog to the shipper over UDP, which never
    fails a start; RFC 5424 with microseconds keeps the tag whole and the line as printed."""
    return {"Type": "syslog", "Config": {
        "syslog-address": f"udp://127.0.0.1:{port}", "syslog-format": "rfc5424micro",
        "tag": tag(app, process, release)}}


def _action_name(app: str, drain: Drain) -> str:
    return f"{app}:{drain.protocol}:{drain.host}:{drain.port}"


def render(*, port: int, work_dir: str, drains: dict[str, list[Drain]], receive_buffer: str = RECEIVE_BUFFER) -> str:
    """The shipper's rsyslog.conf: the local UDP input, the records' format, and per app its drains, each an
    action with a queue of its own that drops (never waits) when full and retries a drain that is down forever.
    App names, hosts and ports are checked before they get here (names.APP_NAME, `parse`): no quoting needed."""
    lines = [
        "# minipaas log drains: rendered by minipaas (logs:drain); changes here are overwritten.",
        f'global(workDirectory="{work_dir}" maxMessageSize="64k")',
        'module(load="imudp")',
        f'input(type="imudp" address="127.0.0.1" port="{port}" ruleset="minipaas_drains"'
        + (f' rcvbufSize="{receive_buffer}")' if receive_buffer else ")"),
        # APP-NAME app, PROCID process type, and all four in structured data; the line as the app printed it.
        'template(name="minipaas_drain" type="string" string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% '
        '%app-name:F,47:1% %app-name:F,47:2% - [' + SD_ID.replace('"', '') + ' app=\\"%app-name:F,47:1%\\" '
        'process=\\"%app-name:F,47:2%\\" release=\\"%app-name:F,47:3%\\" container=\\"%app-name:F,47:4%\\"] '
        '%msg%")',
        'ruleset(name="minipaas_drains") {',
    ]
    for app in sorted(drains):
        lines.append(f'  if $app-name startswith "{app}/" then {{')
        for drain in drains[app]:
            lines.append(
                f'    action(type="omfwd" name="{_action_name(app, drain)}" target="{drain.host}" '
                f'port="{drain.port}" protocol="{drain.protocol}" template="minipaas_drain" '
                f'queue.type="LinkedList" queue.size="{QUEUE}" queue.timeoutEnqueue="0" '
                f'action.resumeRetryCount="-1" action.resumeInterval="{RETRY_SECONDS}" '
                'action.reportSuspension="off")')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
