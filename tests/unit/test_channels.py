"""No hidden channels (issue 23): what one part of minipaas tells another goes as a value, read from the source.

- The process environment is written only by the CLI's entry modules (ENTRY): a value set there reaches the
  whole process and its children, so only the code that starts a process may decide it.
- `Progress` is defined once, in minipaas/progress.py.
- A `Host` (a database connection) is made only where a process or a thread starts (HOST_MAKERS); the code
  below is handed one.
- Paths under the home come from state/layout.py; every folder there has a mode in perms.POLICY.
Fast tier: the source is parsed, nothing runs but two small in-process checks.
"""

from __future__ import annotations

import ast
import contextvars
import os
from pathlib import Path

import pytest

from minipaas.access import access
from minipaas.build import builds
from minipaas.deploy import hook
from minipaas.state import perms
from minipaas.state.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "minipaas"

# "The CLI entry": the modules that start a minipaas process and may therefore set its environment.
ENTRY = {
    "minipaas/cli/__init__.py": "`minipaas`'s main: every command, the retirer and the watcher start here",
    # `minipaas ssh-command` hands the process to it before any command runs: it clears what the environment
    # said of minipaas and names the key's instance (MINIPAAS_HOME) and the key (MINIPAAS_USER) for the
    # commands it runs and the git hook they start, as sudo's env_reset would for a process of its own.
    "minipaas/ssh/sshentry.py": "the ssh forced command's entry",
}
# Not the entry, and allowed, because it only removes: a test's pause (MINIPAAS_TEST_PAUSE_AT) is taken out of the
# environment when faultpoints loads, so that no process this one starts (watcher, retirer) pauses too.
REMOVES_ONLY = {"minipaas/faultpoints.py"}

# Where a Host may be made, and why: each opens its own SQLite connection, which is the point in these places.
HOST_MAKERS = {
    "minipaas/state/host.py": "current(): the process' own Host, made once",
    "minipaas/cli/": "the commands: a process' entry",
    "minipaas/dashboard/": "the dashboard server: a connection per worker thread (auth.py, live.py)",
    "minipaas/ssh/": "the ssh entry",
    # The watcher's threads (watcher.run starts them; SQLite connections are not shared between threads).
    "minipaas/running/watcher.py": "the watcher's routing-again thread",
    "minipaas/running/taskwatch.py": "the watcher's task thread, one per round",
    "minipaas/deploy/canaryguard.py": "the watcher's canary thread, one per tick",
    "minipaas/running/nginxwatch.py": "the watcher's nginx thread, for its audit lines",
    "minipaas/running/sleeping.py": "the watcher's idle-apps thread and its wake threads, one connection each",
    "minipaas/running/notifywatch.py": "the watcher's notifications thread (the outbox)",
    "minipaas/running/diskfree.py": "the watcher's disk thread (disk-low)",
    "minipaas/running/drains.py": "the watcher's log drains thread (the shipper kept running)",
    "minipaas/running/cronwatch.py": "the watcher's cron thread, one per tick, and a thread per job's run",
    "minipaas/running/restore.py": "ps:restore's worker threads, one connection each",
    "minipaas/host/setup.py": "init: makes the home and its database, then opens it",
}

_WRITERS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os")


def environment_writes(source: str) -> list[int]:
    """Lines that write os.environ: item assignment or deletion, a mutating method, os.putenv/unsetenv, or
    `from os import environ` (whose writes this would not see)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        if any(isinstance(t, ast.Subscript) and _is_environ(t.value) for t in targets):
            found.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (func.attr in _WRITERS and _is_environ(func.value)) or (
                    func.attr in ("putenv", "unsetenv") and isinstance(func.value, ast.Name) and func.value.id == "os"):
                found.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "putenv", "unsetenv") for a in node.names):
            found.append(node.lineno)
    return found


@pytest.mark.parametrize(("source", "writes"), [
    ("import os\nos.environ['A'] = '1'", True),
    ("import os\nos.environ.update(A='1')", True),
    ("import os\nos.environ.setdefault('A', '1')", True),
    ("import os\ndel os.environ['A']", True),
    ("import os\nos.putenv('A', '1')", True),
    ("from os import environ", True),
    ("import os\nx = os.environ.get('A')", False),
    ("import os\nenv = {**os.environ, 'A': '1'}", False),
])
def test_the_environment_check_sees_a_write(source: str, writes: bool) -> None:
    assert bool(environment_writes(source)) is writes


def test_only_the_cli_entry_writes_the_environment() -> None:
    for name in (*ENTRY, *REMOVES_ONLY):
        assert (ROOT / name).is_file(), f"{name} is named here and does not exist"
    found = {}
    for path in _modules():
        name = _rel(path)
        lines = environment_writes(path.read_text(encoding="utf-8"))
        if lines and name not in ENTRY:
            found[name] = lines
    assert set(found) <= REMOVES_ONLY, f"os.environ written outside the CLI entry ({', '.join(ENTRY)}): {found}"
    text = (ROOT / "minipaas/faultpoints.py").read_text(encoding="utf-8")
    assert "os.environ.pop(VARIABLE" in text, "faultpoints no longer only removes its variable: check REMOVES_ONLY"


def test_progress_is_defined_in_progress_py_only() -> None:
    defined = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == "Progress" for t in targets):
                defined.append(_rel(path))
    assert defined == ["minipaas/progress.py"], defined


def host_constructions(source: str) -> list[int]:
    """Lines that call `Host(...)` or `<module>.Host(...)`."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "Host")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "Host"))]


def test_the_host_check_sees_a_construction() -> None:
    assert host_constructions("h = Host(settings)\nx = host_mod.Host(s).db") == [1, 2]
    assert host_constructions("def f(host: Host) -> Host:\n    return host") == []


def test_a_host_is_made_only_where_a_process_or_thread_starts() -> None:
    made = {_rel(path): lines for path in _modules()
            if (lines := host_constructions(path.read_text(encoding="utf-8")))}
    outside = {name: lines for name, lines in made.items()
               if not any(name == allowed or (allowed.endswith("/") and name.startswith(allowed))
                          for allowed in HOST_MAKERS)}
    assert not outside, f"Host(...) made below the entry points (take the caller's Host instead): {outside}"


def test_no_path_is_built_from_the_home_outside_the_layout() -> None:
    """`<settings>.home / "x"` is spelled in state/layout.py alone (perms.py applies its table of relative paths)."""
    built = {}
    for path in _modules():
        name = _rel(path)
        if name in ("minipaas/state/layout.py", "minipaas/state/perms.py"):
            continue
        lines = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and (
                     (isinstance(node.left, ast.Attribute) and node.left.attr == "home")
                     or (isinstance(node.left, ast.Name) and node.left.id == "home"))]
        if lines:
            built[name] = lines
    assert not built, f"paths under the home built by hand (use settings.layout): {built}"


def test_every_path_of_the_layout_has_a_mode() -> None:
    layout = Layout(Path("/h"))
    paths = [getattr(layout, name) for name, value in vars(Layout).items() if isinstance(value, property)]
    assert len(paths) >= 12
    for path in paths:
        relative = path.relative_to("/h").as_posix()
        assert perms.rule_for(relative) is not None, f"{relative} (layout.py) has no rule in perms.POLICY"


def test_verbose_is_an_option_of_the_build_not_the_environment() -> None:
    before = dict(os.environ)
    options = hook._options(["verbose", "no-cache"], "admin", frozenset(), "shop")
    assert options == builds.Options(no_cache=True, verbose=True)
    assert hook._options([], "admin", frozenset(), "shop").verbose is False
    assert dict(os.environ) == before


def test_the_acting_key_stays_in_its_context() -> None:
    deployer = access.Principal("dee", "deployer", "SHA256:" + "D" * 43, frozenset({"shop"}))

    def as_deployer() -> tuple[bool, bool, bool]:
        access.act_as(deployer)
        return access.visible("shop"), access.visible("blog"), access.hides_config_values()

    assert contextvars.copy_context().run(as_deployer) == (True, False, True)
    # Outside that context nobody acts: the host's administrator, who sees everything.
    assert access.current() is None
    assert access.visible("blog") and not access.hides_config_values()


@pytest.mark.parametrize(("args", "verbose"), [(["--verbose"], True), ([], False)])
def test_deploy_verbose_reaches_the_build_as_an_option(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                       verbose: bool) -> None:
    from click.testing import CliRunner

    from minipaas.adapters import gitrepo
    from minipaas.cli import releases
    from minipaas.deploy import rollout
    from minipaas.state import releaselog
    from minipaas.state.settings import load

    calls = []
    host = type("FakeHost", (), {"settings": load({"MINIPAAS_HOME": "/nonexistent/home"})})()
    monkeypatch.setattr(releases, "current_host", lambda: host)
    monkeypatch.setattr(releases, "existing_app", lambda app: app)
    monkeypatch.setattr(releaselog, "last_pushed", lambda host, app: "a" * 40)
    monkeypatch.setattr(gitrepo, "resolve", lambda repo, rev: "b" * 40)
    monkeypatch.setattr(rollout, "deploy_commit", lambda *a, **kw: calls.append((a, kw)))
    before = dict(os.environ)
    result = CliRunner().invoke(releases.deploy_cmd, ["shop", *args])
    assert result.exit_code == 0, result.output
    (positional, keywords), = calls
    assert positional[2] == "a" * 40 and positional[4] == builds.Options(verbose=verbose)
    assert keywords == {"canary_share": None}
    assert dict(os.environ) == before
