"""Property-based tests (Hypothesis) of the parsers that read a pushed repository's files: the Procfile,
package.json (engines, scripts, packageManager, cacheDirectories, dependencies), .nvmrc and .node-version,
app.json (healthchecks, formation) and CHECKS. Whatever a file holds, its parser either refuses it in one
line (a MinipaasError, see conftest.assert_one_line_refusal) or returns checked facts that mean what the file
said: they round-trip, and what reaches a request, a Dockerfile or a container has the one documented form.
Hypothesis writes the files from an alphabet of what splits lines and words differently (Unicode line and
space separators, control characters, non-ASCII digits, quotes, shell syntax). Pure functions: no engine;
each property runs in well under two seconds."""

from __future__ import annotations

import http.client
import json
import math
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from semantic_version import Version

from minipaas.deploy import health
from minipaas.errors import MinipaasError
from minipaas.source import appjson, nodeversions, packagejson, procfile
from tests.helpers.host import assert_one_line_refusal

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What splits lines, words and numbers differently from one reader to the next.
ODD = ["\x00", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1b", "\x1c", "\x7f", "\x85", "\u00a0", "\u2028",
       "\u2029", "\ufeff", "\u200b", "é", "²", "١", "ß", "\u212a"]
SHELL = ["'", '"', "`id`", "$(id)", ";", "&&", "|", "\\", "$PORT", "#", "=", ":", " ", "  ", "/", "*", "{", "}"]
HOSTILE = st.lists(st.sampled_from(ODD + SHELL + ["a", "web", "x", "1", "node app.js"]), max_size=8).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | HOSTILE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE, inner, max_size=3), max_leaves=6)


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8")


def requestable(path: str) -> bool:
    """Whether http.client (what the health check uses) can send a GET of this path as it is."""
    connection = http.client.HTTPConnection("127.0.0.1", 9)  # putrequest only buffers: nothing connects
    try:
        connection.putrequest("GET", path)
    except (http.client.InvalidURL, UnicodeEncodeError, ValueError):
        return False
    return True


# -- the Procfile -------------------------------------------------------------------------------------------

PROCESS_TYPE = st.one_of(st.from_regex(procfile.PROCESS_TYPE, fullmatch=True),
                         st.sampled_from(["Web", "9x", "a" * 32, "", "w\u00f6rker", "web worker"]))
COMMAND_TOKENS = ["node", "server.js", " ", "--port", "$PORT", "npm start", *SHELL]
PLAIN_COMMAND = st.lists(st.sampled_from(COMMAND_TOKENS), min_size=1, max_size=6).map("".join)
ODD_COMMAND = st.lists(st.sampled_from(COMMAND_TOKENS + ODD), max_size=6).map("".join)
PROCFILE_LINE = st.one_of(
    st.builds(lambda name, sep, command: f"{name}{sep}{command}", PROCESS_TYPE,
              st.sampled_from([":", ": ", " : ", ":\t", ""]), st.one_of(PLAIN_COMMAND, PLAIN_COMMAND, ODD_COMMAND)),
    st.sampled_from(["", "# a comment", "  ", "\t#x"]),
    st.lists(st.sampled_from(COMMAND_TOKENS + ODD + [":"]), max_size=6).map("".join))
PROCFILE = st.one_of(
    st.lists(PROCFILE_LINE, max_size=5).flatmap(lambda lines: st.sampled_from(["\n", "\r\n"]).map(
        lambda end: as_bytes(end.join(lines)))),
    st.binary(max_size=64))


@FAST
@given(PROCFILE)
def test_a_procfile_is_refused_in_one_line_or_read_as_types_and_commands_that_round_trip(raw: bytes) -> None:
    try:
        procs = procfile.parse(raw)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    for name, command in procs.items():
        assert procfile.PROCESS_TYPE.fullmatch(name)
        assert command and command == command.strip()
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]", command)
    # What was read is what the file said: written back in the documented form, it reads the same.
    assert procfile.parse(as_bytes("".join(f"{name}: {command}\n" for name, command in procs.items()))) == procs


# -- package.json ---------------------------------------------------------------------------------------------

MANAGER_TOKENS = ["npm", "pnpm", "yarn", "bun", "@", "9", "10", ".", "1", "0", "01", "-rc.1", "+sha512.", "+md5.",
                  "abcdef", "0123", "\n", "RUN id", " ", "latest", "^", "x"]
NUMBERS = r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})"
SEMVER = st.from_regex(NUMBERS + r"(-[0-9A-Za-z-]{1,5}(\.[0-9A-Za-z-]{1,3})?)?", fullmatch=True)
MANAGER = st.one_of(
    st.builds(lambda name, version, digest: f"{name}@{version}{digest}",
              st.sampled_from(["npm", "pnpm", "yarn", "bun"]), SEMVER,
              st.sampled_from(["", "+sha512.0123abcdef", "+sha1.ab", "+md5.ab", "+sha512.", "\n"])),
    st.lists(st.sampled_from(MANAGER_TOKENS + ODD[:6]), max_size=9).map("".join))
FOLDER = st.one_of(
    st.from_regex(r"(\./)?[a-z.@_+-]{1,6}(/[a-z.]{1,4}){0,2}/?", fullmatch=True),
    st.lists(st.sampled_from([".", "..", "/", "./", "a", "node_modules", ".cache", "é", " ", ",", "=", "\n", "~",
                              "@x", "b+c"]), max_size=6).map("".join))


@st.composite
def package_documents(draw: st.DrawFn) -> dict[str, object]:
    document: dict[str, object] = {}
    if draw(st.booleans()):
        node = draw(st.one_of(VERSION_TEXT, VERSION_TEXT, JSON_VALUES))
        document["engines"] = draw(st.one_of(st.just({"node": node}), st.just({"node": node}), JSON_VALUES))
    if draw(st.booleans()):
        document["scripts"] = draw(st.one_of(st.dictionaries(HOSTILE, HOSTILE, max_size=3),
                                             st.dictionaries(HOSTILE, JSON_VALUES, max_size=2), JSON_VALUES))
    if draw(st.booleans()):
        document["packageManager"] = draw(st.one_of(MANAGER, MANAGER, JSON_VALUES))
    for key in ("dependencies", "devDependencies", "optionalDependencies"):
        if draw(st.booleans()):
            document[key] = draw(st.one_of(st.dictionaries(HOSTILE, st.one_of(
                st.sampled_from(["^1.0.0", "file:../x", "./lib", " link:y", "workspace:*"]), JSON_VALUES),
                max_size=3), JSON_VALUES))
    if draw(st.booleans()):
        document["cacheDirectories"] = draw(st.one_of(
            st.lists(FOLDER, max_size=4), st.lists(st.one_of(FOLDER, JSON_VALUES), max_size=4), JSON_VALUES))
    if draw(st.booleans()):
        document["workspaces"] = draw(JSON_VALUES)
    return document


VERSION_TOKENS = ["", "v", "V", "20", "18", "22", "26", "16", "0", "17", "99999999999999999999", ".", "x", "X",
                  "*", "^", "~", ">=", "<=", ">", "<", "=", " ", "||", " - ", "lts/", "LTS/", "iron", "Iron", "-1",
                  "-3", "-99", "node", "latest", "current", "stable", "#", "1.2.3-rc.1", "+build"]
REQUESTS = ["20", "v20.17.0", "20.x", "20.17.x", "^18", "~20.17", ">=18 <21", ">= 18 < 21", "18 - 20", "^18 || ^22",
            "*", "lts/iron", "lts/*", "lts/-1", "node", "26", "<20", "=20.17.0", "16.20.2", "99", "lts/argon"]
VERSION_TEXT = st.one_of(
    st.sampled_from(REQUESTS),
    st.builds(lambda before, text, after: before + text + after, st.sampled_from(["", " ", "\ufeff", "\t"]),
              st.sampled_from(REQUESTS), st.sampled_from(["", " ", " # pinned", "\n", "\r\n", "\x00"])),
    st.lists(st.sampled_from(VERSION_TOKENS + ODD), max_size=7).map("".join))


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # its documents cost most
@given(package_documents())
def test_package_json_is_refused_in_one_line_or_read_as_the_facts_it_states(document: dict[str, object]) -> None:
    try:
        package = packagejson.parse(json.dumps(document).encode())
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    engines = document.get("engines")
    assert package.engines_node == (engines.get("node") if isinstance(engines, dict) else None)
    assert dict(package.scripts) == (document.get("scripts") or {})
    manager = package.package_manager
    if manager is None:
        assert "packageManager" not in document
    else:  # exactly what the app pinned, and of the one form a Dockerfile argument may take
        assert manager.corepack_spec == document["packageManager"]
        assert manager.name in packagejson.MANAGERS
        assert re.fullmatch(r"[0-9A-Za-z.+-]+", manager.corepack_spec.partition("@")[2])
        assert str(Version(manager.version)) == manager.version
    for key in ("dependencies", "devDependencies"):
        names = set(document.get(key) or {}) | (set(document.get("optionalDependencies") or {})
                                                if key == "dependencies" else set())
        assert (package.dependencies if key == "dependencies" else package.dev_dependencies) == names
    written = [raw.strip().removeprefix("./").rstrip("/") for raw in document.get("cacheDirectories") or []]
    assert list(package.cache_directories) == list(dict.fromkeys(written))
    for folder in package.cache_directories:  # inside /app, and nothing that could end a mount option
        assert not folder.startswith("/") and ".." not in folder.split("/") and "." not in folder.split("/")
        assert re.fullmatch(r"[A-Za-z0-9._@+/-]+", folder)


@FAST
@given(st.binary(max_size=40) | st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 200_000)))
def test_any_bytes_as_package_json_are_one_line_or_a_document(raw: bytes) -> None:
    try:
        packagejson.parse(raw)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)


# -- .nvmrc, .node-version and engines.node ------------------------------------------------------------------

VERSIONS = ("26.1.0", "26.0.0", "26.2.0-rc.1", "23.3.0", "22.11.0", "20.18.1", "20.17.0", "20.0.0", "18.20.4",
            "18.19.0", "16.20.2", "4.9.1", "0.12.18", "01.2.3")
CATALOG = nodeversions.Catalog(VERSIONS, {"hydrogen": 18, "iron": 20, "jod": 22}, fetched_at=1.0)
VERSION_FILE = st.one_of(st.none(), VERSION_TEXT.map(as_bytes), st.binary(max_size=16),
                         st.lists(VERSION_TEXT, max_size=3).map(lambda lines: as_bytes("\n".join(lines))))


@FAST
@given(engines=st.one_of(st.none(), VERSION_TEXT), nvmrc=VERSION_FILE, node_version=VERSION_FILE)
@example(engines="²", nvmrc=None, node_version=None)
def test_a_node_request_is_refused_in_one_line_or_resolves_to_the_newest_release_it_allows(
        engines: str | None, nvmrc: bytes | None, node_version: bytes | None) -> None:
    files = {".nvmrc": nvmrc, ".node-version": node_version}
    try:
        wanted = nodeversions.wanted(engines, files.get, 26)
        found = nodeversions.resolve(wanted, CATALOG)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    # Where the request came from: engines.node, then .node-version, then .nvmrc, then the default.
    if engines is not None and engines.strip():
        assert wanted.source == "engines.node"
    elif wanted.source != "default":
        assert files[wanted.source] is not None
    assert not re.search(r"[\x00-\x1f\x7f]", wanted.text)
    spec = nodeversions.spec_for(wanted, CATALOG.lts)
    assert nodeversions.is_release(found) and found in VERSIONS and Version(found) in spec
    newer = [v for v in VERSIONS if nodeversions.is_release(v) and Version(v) > Version(found)]
    assert not [v for v in newer if Version(v) in spec], f"{wanted} allows a newer release than {found}"


# -- app.json -----------------------------------------------------------------------------------------------

NUMBER = st.one_of(st.integers(-5, 70_000), st.floats(), st.booleans(), st.none(), st.sampled_from(["5", "", "x"]))
PATH = st.lists(st.sampled_from(["/", "/health", "//x", "x", "?a=1", "#f", "%20", "%zz", " ", "é", "\t",
                                 "\x7f", "\x85", "\u2028", "\x00", "\n"]), max_size=4).map("".join)
SECONDS = st.one_of(st.integers(0, 3600), st.floats(0, 3600), NUMBER)
CHECK_KEYS = {
    "type": st.one_of(st.sampled_from(["", "startup", "startup", "liveness", "readiness", "Startup"]), JSON_VALUES),
    "path": st.one_of(PATH, PATH, JSON_VALUES), "content": st.one_of(HOSTILE, HOSTILE, JSON_VALUES),
    "command": st.one_of(HOSTILE, st.lists(HOSTILE, max_size=3), JSON_VALUES),
    "name": st.one_of(HOSTILE, HOSTILE, JSON_VALUES), "uptime": SECONDS,
    "port": st.one_of(st.integers(1, 65535), NUMBER), "attempts": SECONDS, "wait": SECONDS, "timeout": SECONDS,
    "initialDelay": SECONDS,
}
LIKELY_KEYS = {
    "type": st.sampled_from(["", "startup", "liveness"]), "path": PATH,
    "content": st.sampled_from(["", "ok", "caf\u00e9", "\"quoted\"", "a\u00a0b"]),
    "command": st.one_of(PLAIN_COMMAND, st.lists(ODD_COMMAND, max_size=3)), "name": PLAIN_COMMAND,
    "uptime": st.integers(0, 5), "port": st.integers(1, 65535), "attempts": st.integers(1, 5),
    "wait": st.floats(0, 3600), "timeout": st.integers(1, 3600), "initialDelay": st.integers(0, 10),
}
CHECK = st.one_of(st.fixed_dictionaries({}, optional=LIKELY_KEYS), st.fixed_dictionaries({}, optional=CHECK_KEYS))
QUANTITY = st.fixed_dictionaries({}, optional={"quantity": st.one_of(st.integers(0, 20), NUMBER)})
FORMATION = st.dictionaries(st.sampled_from(["web", "worker", "clock", "Web", "9x", "a" * 32, "wörker", "w\n"]),
                            st.one_of(QUANTITY, JSON_VALUES), max_size=3)
APP_JSON = st.one_of(
    st.fixed_dictionaries({"healthchecks": st.fixed_dictionaries({"web": st.lists(CHECK, min_size=1, max_size=3)})},
                          optional={"formation": FORMATION}),
    JSON_VALUES,
    st.fixed_dictionaries({}, optional={
        "healthchecks": st.one_of(st.fixed_dictionaries({}, optional={
            "web": st.one_of(st.lists(CHECK, max_size=3), JSON_VALUES)}), JSON_VALUES),
        "formation": st.one_of(FORMATION, JSON_VALUES)}))
APP_JSON_BYTES = st.one_of(APP_JSON.map(lambda document: json.dumps(document).encode()), st.binary(max_size=40),
                           st.builds(lambda n: b'{"healthchecks": ' + b"[" * n, st.integers(1, 200_000)))


def assert_printable_line(text: str) -> None:
    assert not re.search(r"[\x00-\x1f\x7f\x85\u2028\u2029]", text), text


@FAST
@given(APP_JSON_BYTES)
@example(b'{"healthchecks": ' + b"[" * 100_000)
@example(json.dumps({"healthchecks": {"web": [{"path": "/caf\u00e9"}]}}).encode())
@example(json.dumps({"healthchecks": {"web": [{"command": ["true\n-----> Deployed"]}]}}).encode())
def test_app_json_is_refused_in_one_line_or_read_as_checks_that_can_run(raw: bytes) -> None:
    try:
        checks = appjson.parse(raw)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        checks = None
    for check in (checks.run if checks else ()):
        assert check.path == "" or (check.path.startswith("/") and requestable(check.path))
        assert all(isinstance(part, str) and "\x00" not in part for part in check.command)
        for number in (check.uptime, check.wait, check.timeout, check.initial_delay):
            assert math.isfinite(number) and 0 <= number <= 3600
        assert isinstance(check.attempts, int) and 1 <= check.attempts <= 3600
        assert check.port is None or 1 <= check.port <= 65535
        assert_printable_line(check.describe())  # a line of the push's output
        assert_printable_line(check.name)
    try:
        counts = appjson.formation(raw, process_type=procfile.PROCESS_TYPE, most=20)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert all(procfile.PROCESS_TYPE.fullmatch(name) and 0 <= count <= 20 and type(count) is int
               for name, count in counts.items())


# -- CHECKS ------------------------------------------------------------------------------------------------

CHECKS_TOKENS = ["WAIT=", "TIMEOUT=", "5", "0", "²", "١٢", "9" * 400, "/", "/health", "//x", "/é", "/a b", "ok",
                 "x=y", "/?q=1", "/%20", "#", " ", "\t", "content"]
CHECKS_LINE = st.one_of(
    st.builds(lambda path, content: f"{path} {content}".rstrip(" "), st.from_regex(r"/[!-~]{0,8}", fullmatch=True),
              st.one_of(HOSTILE, st.just(""))),
    st.builds(lambda key, seconds: f"{key}={seconds}", st.sampled_from(["WAIT", "TIMEOUT", "ATTEMPTS", "wait"]),
              st.one_of(st.integers(0, 4000).map(str), st.sampled_from(["²", "١٢", "9" * 400, " 5 ", "-1", "x"]))),
    st.sampled_from(["", "# a comment", "  "]),
    st.lists(st.sampled_from(CHECKS_TOKENS + ODD), max_size=5).map("".join))
CHECKS_TEXT = st.lists(CHECKS_LINE, max_size=5).map("\n".join)


@FAST
@given(CHECKS_TEXT)
@example("WAIT=²\n/")
@example("/caf\u00e9 ok")
@example("WAIT=" + "9" * 400 + "\n/")
def test_a_checks_file_is_refused_in_one_line_or_read_as_requests_that_can_be_sent(text: str) -> None:
    try:
        checks = health.parse_checks(text)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert checks.checks
    for check in checks.checks:
        assert check.path.startswith("/") and not check.path.startswith("//") and requestable(check.path)
        assert_printable_line(check.describe())
    assert math.isfinite(checks.wait) and 0 <= checks.wait <= 3600
    assert math.isfinite(checks.request_timeout) and 1 <= checks.request_timeout <= 3600
