"""Tests as image layers, without the engine: the test stage the node template renders (for each builder),
which command runs and when (teststage.decide), what the pusher sees of a test step (BuildLines, from both
builders' real output forms), the settings, the push options' checks and the release log's migration."""

from __future__ import annotations

import json
import sqlite3

import pytest

from minipaas.build import buildoutput, buildpacks, builds, dockerfiles
from minipaas.build.buildkit import Builder
from minipaas.deploy import hook
from minipaas.errors import BuildFailed, MinipaasError
from minipaas.source import nodeinstall, packagejson, teststage
from minipaas.state import apps, store
from minipaas.state.releaselog import Release
from minipaas.state.settings import SHARE_DIR


def render(package: dict[str, object], files: dict[str, bytes], test_command: str, *, builder: str = "buildkit",
           pack: str = "node") -> str:
    parsed = packagejson.parse(json.dumps(package).encode())
    paths = frozenset({"package.json", *files})
    install = nodeinstall.decide(parsed, paths, files.get, commands=())
    [found] = [p for p in buildpacks.load_all(SHARE_DIR / "buildpacks") if p.name == pack]
    facts = {"app": "shop", "files": sorted(p for p in paths if "/" not in p), "folders": builds._folders(paths),
             "package": parsed, "install": install, "procfile": {}, "build_ca": True, "builder": builder,
             "build_config": {}, "base": "minipaas/node:26", "node_version": "26.0.0", "test_command": test_command}
    # As the builder gets it: read once, checked, rendered (no engine: images stay names).
    planned = dockerfiles.plan(buildpacks.render(found, facts), app="shop", allowed=(),
                               provided=lambda ref: ref == "minipaas/node:26", cache_namespace="mp-1/shop/0a1b")
    return dockerfiles.render(planned.check(None).instructions, stage_labels={}, labels={})


def argv_of_tests(line: str) -> list[str]:
    """The test step's argv: a fixed script, the app's command its one argument (never Dockerfile syntax)."""
    argv = json.loads(line[line.index("["):])
    assert argv[:3] == ["/bin/sh", "-c", '/bin/sh -c "$1" && touch /tmp/minipaas-tests-passed # Running tests'], argv
    assert argv[3] == "sh" and len(argv) == 5, argv
    return argv


def stages(text: str) -> dict[str, list[str]]:
    """Each stage's instructions (comments left out), by its name (`final` for the unnamed last one)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            current = found.setdefault(line.split(" AS ")[1] if " AS " in line else "final", [])
        if line and not line.startswith("#"):
            current.append(line)
    return found


TESTED = {"scripts": {"test": "node --test", "start": "node server.js"}, "dependencies": {"ms": "2"},
          "devDependencies": {"is-number": "7"}}
LOCK = {"package-lock.json": b"{}"}


@pytest.mark.parametrize("builder", ["buildkit", "legacy"])
def test_the_test_stage_sits_on_the_install_and_the_release_stage_prunes_outside_it(builder: str) -> None:
    found = stages(render(TESTED, LOCK, "npm test", builder=builder))
    assert list(found) == ["build", "test", "release", "final"]
    build, test, release, final = found["build"], found["test"], found["release"], found["final"]
    # The install keeps devDependencies, in a layer of its own before the source: a source change reuses it.
    assert build[-2].startswith("COPY src/package.json src/package-lock.json") and \
        build[-1].endswith("npm ci --no-audit --no-fund")
    assert not any("prune" in line or "COPY src/ ./" in line for line in build)
    assert test[1:] == ["COPY src/ ./", "ENV CI=true", next(line for line in test if "npm test" in line)]
    assert argv_of_tests(test[-1])[4] == "npm test"
    assert buildoutput.step_name(test[-1]) == "Running tests"  # the pusher gets `Running tests: npm test` (builds.py)
    # The release stage: after the test stage (its marker, for both builders), the prune, not the source.
    assert release[0] == "FROM build AS release"
    assert release[1] == "COPY --from=test /tmp/minipaas-tests-passed /tmp/minipaas-tests-passed"
    assert release[2].endswith("npm prune --omit=dev --no-audit --no-fund") and len(release) == 3
    assert ("--mount=type=cache" in release[2]) == (builder == "buildkit")
    # What ships: the release stage's /app and the source; nothing of the test stage.
    assert "COPY --from=release --chown=node:node /app /app" in final
    assert not any("--from=test" in line or "CI=true" in line for line in final)


def test_with_a_build_step_the_tests_run_on_the_built_app_and_the_prune_follows_them() -> None:
    package = {**TESTED, "scripts": {**TESTED["scripts"], "build": "node build.js"}}
    found = stages(render(package, LOCK, "npm test", builder="legacy"))
    assert found["build"][-3:] == ["RUN npm ci --no-audit --no-fund", "COPY src/ ./", "RUN npm run build"]
    assert "COPY src/ ./" not in found["test"]  # the build stage has it
    assert found["release"][-1] == "RUN npm prune --omit=dev --no-audit --no-fund"
    # Without tests, as before: one step builds and prunes, and no test or release stage.
    plain = stages(render(package, LOCK, "", builder="legacy"))
    assert list(plain) == ["build", "final"]
    assert plain["build"][-1] == "RUN npm run build && npm prune --omit=dev --no-audit --no-fund"


def test_without_tests_the_template_renders_what_it_did_before() -> None:
    found = stages(render(TESTED, LOCK, ""))
    assert list(found) == ["build", "final"]
    assert found["build"][-1].endswith("npm ci --no-audit --no-fund --omit=dev")
    assert "COPY --from=build --chown=node:node /app /app" in found["final"]


def test_a_static_build_site_runs_its_tests_too_and_serves_the_release_stage() -> None:
    package = {"scripts": {"build": "vite build", "test": "vitest"}, "devDependencies": {"vite": "5"}}
    found = stages(render(package, LOCK, "npm test", pack="static-build"))
    assert list(found) == ["build", "test", "release"]  # the image is the last stage: the pruned release


@pytest.mark.parametrize("command", ["node --test --test-name-pattern='unit'", 'a "b" \\', "x\fCOPY --from=v:1 / /s",
                                     "npm test # Running tests: forged", "caf\u00e9 \u2028 && echo $HOME"])
def test_the_app_json_command_reaches_the_test_step_as_an_argument_only(command: str) -> None:
    """Attack 2: app.json's test script holding a form feed wrote instructions into the buildpack's Dockerfile."""
    text = render(TESTED, LOCK, command)
    [line] = [line for line in text.splitlines() if "Running tests" in line]
    assert argv_of_tests(line)[4] == command
    assert not any("--from=v" in other for other in text.splitlines() if other != line)
    assert buildoutput.step_name(line) == "Running tests"


# -- which command, and when --------------------------------------------------------------------

def decide(scripts: dict[str, str], app_json: str = "", *, manager: str = "npm", app: str = "shop",
           setting: str = "on", skip: bool = False) -> teststage.Decision:
    return teststage.decide(packagejson.Package(scripts=scripts), app_json, manager=manager, app=app,
                            setting=setting, skip=skip)


def test_the_command_is_app_jsons_else_the_package_managers_test() -> None:
    assert decide({"test": "jest"}) == teststage.Decision("npm test", "run")
    assert decide({"test": "jest"}, manager="pnpm").command == "pnpm test"
    assert decide({"test": "jest"}, "make check").command == "make check"
    assert decide({}, "make check").command == "make check"
    assert decide({}) == teststage.Decision("", "")
    placeholder = decide({"test": 'echo "Error: no test specified" && exit 1'})
    assert (placeholder.command, placeholder.result) == ("", "") and "placeholder" in placeholder.why


@pytest.mark.parametrize(("setting", "app", "skip", "result", "why"), [
    ("on", "shop", False, "run", ""),
    ("on", "shop", True, "skipped", "-o skip-tests"),
    ("off", "shop", False, "skipped", "the tests setting is off"),
    ("review-only", "shop", False, "skipped", "the tests setting is review-only"),
    ("review-only", "shop--feature", False, "run", ""),
    ("review-only", "shop--feature", True, "skipped", "-o skip-tests"),
])
def test_the_setting_and_the_push_option_decide_whether_they_run(setting: str, app: str, skip: bool, result: str,
                                                                  why: str) -> None:
    decision = decide({"test": "node --test"}, app=app, setting=setting, skip=skip)
    assert (decision.command, decision.result, decision.why) == ("npm test", result, why)


@pytest.mark.parametrize(("raw", "command"), [
    (b'{"scripts": {"test": "npm run ci-test"}}', "npm run ci-test"),
    (b'{"environments": {"test": {"scripts": {"test": "make test"}}}, "scripts": {"test": "x"}}', "make test"),
    (b'{"scripts": {"postdeploy": "x"}}', ""),
    (b'not json', ""),
    (None, ""),
])
def test_app_json_names_a_test_command(raw: bytes | None, command: str) -> None:
    assert teststage.app_json_script(raw) == command


@pytest.mark.parametrize("raw", [b'{"scripts": {"test": ["npm", "test"]}}', b'{"scripts": {"test": "a\\nCOPY x y"}}',
                                 b'{"scripts": {"test": "a \\\\"}}', b'{"scripts": {"test": "   "}}'])
def test_an_odd_app_json_test_command_fails_the_build_with_one_line(raw: bytes) -> None:
    with pytest.raises(BuildFailed, match=r"app\.json's test script must be"):
        teststage.app_json_script(raw)


# -- what the pusher sees --------------------------------------------------------------------------

def feed(lines: list[str]) -> tuple[list[str], buildoutput.BuildLines]:
    shown: list[str] = []
    out = buildoutput.BuildLines(shown.append, tests_label="Running tests: npm test")
    for line in lines:
        out.feed(line)
    return shown, out


TEST_RUN = ('RUN ["/bin/sh", "-c", "/bin/sh -c \\"$1\\" && touch /tmp/minipaas-tests-passed # Running tests", "sh", '
            '"npm test"]')
# BuildKit prints an exec form with its escapes undone (`"$1"`): no longer JSON.
BK_HEADER = f"#12 [test 3/3] {TEST_RUN.replace(chr(92), '')}"


def test_buildkit_a_passing_test_step_is_two_lines_and_its_output_is_held() -> None:
    shown, out = feed([BK_HEADER, "#12 0.512 > tested@1.0.0 test", "#12 0.9 ok 1 - the answer", "#12 DONE 3.2s"])
    assert shown == ["-----> Running tests: npm test", "-----> Tests passed in 3.2s"]
    assert out.ended(failed=False).state == "passed" and out.tests.seconds == 3.2
    assert out.tests.output == ["> tested@1.0.0 test", "ok 1 - the answer"]


def test_buildkit_a_cached_test_step() -> None:
    shown, out = feed([BK_HEADER, "#12 CACHED"])
    assert shown == ["-----> Tests (cached)"]
    assert (out.tests.state, out.tests.seconds) == ("cached", None)


def test_buildkit_a_failed_test_step_keeps_its_output_for_the_error() -> None:
    lines = [BK_HEADER] + [f"#12 0.{i:03d} line {i}" for i in range(60)] + \
        ['#12 ERROR: process "/bin/sh -c npm test" did not complete successfully: exit code: 1']
    shown, out = feed(lines)
    assert shown == ["-----> Running tests: npm test"]
    assert out.ended(failed=True).state == "failed"
    tail = out.tests.tail().splitlines()
    assert len(tail) == buildoutput.TAIL + 1 and tail[-1] == "line 59" and "20 earlier lines" in tail[0]


def test_legacy_builder_test_steps() -> None:
    step = f"Step 9/14 : {TEST_RUN}"
    shown, out = feed([step, " ---> Running in 0123456789ab", "ok 1 - the answer",
                       "Removing intermediate container 0123456789ab", " ---> 3f2a1b0c9d8e", "Step 10/14 : FROM build"])
    assert shown[0] == "-----> Running tests: npm test" and shown[1].startswith("-----> Tests passed in ")
    assert out.tests.output == ["ok 1 - the answer"]
    shown, out = feed([step, " ---> Using cache", " ---> 3f2a1b0c9d8e"])
    assert shown == ["-----> Tests (cached)"] and out.tests.state == "cached"
    shown, out = feed([step, " ---> Running in 0123456789ab", "not ok 1 - the answer"])
    assert out.ended(failed=True).state == "failed" and out.tests.tail() == "not ok 1 - the answer"


# -- settings, push options, the release log ---------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "ok"), [
    ("tests", "on", True), ("tests", "off", True), ("tests", "review-only", True), ("tests", "yes", False),
    ("deployer-push-options", "", True), ("deployer-push-options", "skip-tests", True),
    ("deployer-push-options", "skip-tests,no-cache", True), ("deployer-push-options", "verbose", False),
    ("deployer-push-options", "skip-tests;rm", False),
])
def test_settings_are_checked(key: str, value: str, ok: bool) -> None:
    assert apps.SETTINGS[key].check(value) is ok


def test_push_options_for_admins_and_deployers() -> None:
    assert hook._options(["skip-tests", "no-cache"], "admin", frozenset(), "shop") == \
        builds.Options(skip_tests=True, no_cache=True)
    with pytest.raises(MinipaasError, match="push option skip-tests is for admins on shop"):
        hook._options(["skip-tests"], "deployer", frozenset(), "shop")
    assert hook._options(["skip-tests"], "deployer", frozenset({"skip-tests"}), "shop").skip_tests
    with pytest.raises(MinipaasError, match="no-cache"):
        hook._options(["skip-tests", "no-cache"], "deployer", frozenset({"skip-tests"}), "shop")
    assert hook._options(["whatever"], "deployer", frozenset(), "shop") == builds.Options()


def test_no_cache_reaches_the_buildkit_command_line(tmp_path: object) -> None:
    argv = Builder("buildkit", "/usr/bin/docker").argv("t:1", tmp_path, no_cache=True)  # type: ignore[arg-type]
    assert "--no-cache" in argv
    assert "--no-cache" not in Builder("buildkit", "/usr/bin/docker").argv("t:1", tmp_path)  # type: ignore[arg-type]


def test_the_migration_adds_the_test_columns_to_an_existing_release_log() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    for script in store.MIGRATIONS[:-1]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) - 1}")
    conn.execute("INSERT INTO apps (name, created_at) VALUES ('shop', 0)")
    conn.execute("INSERT INTO releases (app, number, kind, sha, status, created_at) VALUES ('shop', 1, 'build', "
                 "'abc', 'live', 0)")
    assert store.migrate(conn) == len(store.MIGRATIONS)
    row = dict(conn.execute("SELECT tests, tests_seconds FROM releases").fetchone())
    assert row == {"tests": "", "tests_seconds": None}


@pytest.mark.parametrize(("tests", "seconds", "text"), [
    ("passed", 3.21, "passed 3.2s"), ("passed", None, "passed (cached)"), ("failed", 1.0, "failed 1.0s"),
    ("skipped", None, "skipped"), ("", None, "-"),
])
def test_how_releases_shows_the_tests(tests: str, seconds: float | None, text: str) -> None:
    release = Release("shop", 1, "build", "abc", "", "", "live", {}, "container", "me", 0.0, None, "", tests, seconds)
    assert release.tests_text == text
