"""Postgres from the services test app's own containers (`sql.js`, its own credentials) and from inside the
service's container as the superuser: the shared helpers of the Postgres engine tests."""

from __future__ import annotations

import json
import urllib.parse

from tests.helpers.host import Paas

DENIED = "42501"  # insufficient_privilege


def sql(paas: Paas, app: str, *statements: str, url: str = "") -> list[dict[str, object]]:
    """Each statement in a session of its own, from a one-off container of the app (its image, its config)."""
    result = paas.run("run", app, "--", "/usr/local/bin/node", "sql.js", *(["--url", url] if url else []),
                      *statements)
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == len(statements), result.stdout + result.stderr
    return answers


def ok(answer: dict[str, object]) -> list[dict[str, object]]:
    assert answer["ok"] is True, answer
    return answer["rows"]  # type: ignore[return-value]


def refused(answer: dict[str, object], code: str) -> str:
    assert answer["ok"] is False and answer["code"] == code, answer
    return str(answer["error"])


def database_url(paas: Paas, app: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(paas.run("config:get", app, "DATABASE_URL").stdout.strip())


def with_user(url: urllib.parse.SplitResult, user: str, password: str, database: str = "") -> str:
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{url.hostname}:{url.port}"
    return urllib.parse.urlunsplit((url.scheme, netloc, f"/{database}" if database else url.path, "", ""))


def superuser_sql(paas: Paas, service: str, statement: str) -> str:
    """What the superuser sees, inside the service's container (postgres:connect --superuser): the rows."""
    out = paas.run("postgres:connect", service, "--superuser", input=f"\\pset tuples_only on\n{statement}\n").stdout
    return "\n".join(line for line in out.splitlines() if line.strip() and not line.startswith("Tuples only"))
