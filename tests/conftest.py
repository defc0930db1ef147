"""Test harness: each test gets its own minipaas host (a temp MINIPAAS_HOME, a private nginx on a
free loopback port) driven through the real CLI, real git pushes and the real Docker engine."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
EXAMPLE = ROOT / "examples" / "hello"
CA = "/etc/ssl/certs/ca-certificates.crt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def assert_one_line_refusal(error: BaseException) -> None:
    """A refusal as the house makes them: a MinipaasError whose message is one printable line, which the CLI
    prints as `error: ...` and a push as `!     ...`: no newline, no other control character nor line separator
    (echoed input shows escaped), and not empty."""
    from minipaas.errors import MinipaasError

    assert isinstance(error, MinipaasError), f"{type(error).__name__}: {error}"
    message = error.message
    assert message.strip(), "an empty message"
    odd = [c for c in message if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    assert not odd, f"control characters {odd!r} in {message!r}"


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str]


@dataclass
class Paas:
    """One isolated minipaas host."""

    home: Path
    port: int
    env: dict[str, str]
    work: Path
    https_port: int = 0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "minipaas"]

    @property
    def instance(self) -> str:
        """This host's instance name, which its container and image names carry."""
        from minipaas.state.settings import load

        return load(self.env).instance

    def repository(self, app: str) -> str:
        return f"{self.instance}/{app}"

    def image(self, app: str, release: int) -> str:
        return f"{self.repository(app)}:{release}"

    def container(self, base: str) -> str:
        """`hello.web.1` as this instance names it on the engine."""
        from minipaas.state.settings import load

        return load(self.env).container_name(base)

    def container_names(self) -> list[str]:
        return docker("ps", "-a", "--filter", f"label=minipaas={self.home}", "--format", "{{.Names}}").split()

    def run(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "minipaas", *args], env=self.env, text=True,
                                capture_output=True, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"minipaas {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def new_app(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.run("apps:create", name)
        return name

    def checkout(self, app: str, source: Path) -> Path:
        """A working clone of `source` whose `paas` remote is the app's repo."""
        path = self.work / f"{app}-src"
        if not path.exists():
            shutil.copytree(source, path, ignore=shutil.ignore_patterns("node_modules"))
            git(path, "init", "-q", "-b", "master")
            git(path, "remote", "add", "paas", str(self.home / "repos" / f"{app}.git"))
            commit(path, "initial")
        return path

    def push(self, checkout: Path, ref: str = "master", *, expect_ok: bool = True,
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["git", "push", *extra, "paas", ref], cwd=checkout, env=self.env, text=True,
                                capture_output=True, timeout=900)
        output = result.stdout + result.stderr
        if expect_ok and result.returncode != 0:
            raise AssertionError(f"push failed:\n{output}")
        if not expect_ok and result.returncode == 0:
            raise AssertionError(f"push should have been rejected:\n{output}")
        return result

    def deploy(self, source: Path = EXAMPLE, prefix: str = "t") -> tuple[str, Path]:
        app = self.new_app(prefix)
        checkout = self.checkout(app, source)
        self.push(checkout)
        return app, checkout

    def get(self, app: str, path: str = "/", *, method: str = "GET", body: str | None = None,
            host: str | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Host": host or f"{app}.paas.test"}
            if body is not None:
                headers["Content-Type"] = "text/plain; charset=utf-8"
            conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.read().decode("utf-8", errors="replace"),
                            {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def containers(self, *, all: bool = True) -> list[str]:
        args = ["ps", "-q", "--filter", f"label=minipaas={self.home}"]
        return docker(*args, *(["-a"] if all else [])).split()

    def builder_log(self, app: str, release: int | None = None) -> str:
        """Every line the builder printed for a release (default: the newest), as its log keeps them;
        a push shows the pusher only the steps and the commands' own output."""
        if release is None:
            release = max(r["number"] for r in json.loads(self.run("releases", app, "--json").stdout))
        text = self.run("releases:info", app, str(release)).stdout
        marker = "----- the builder's own output -----"
        return text.split(marker, 1)[1] if marker in text else ""

    def repo_ref(self, app: str, ref: str = "refs/heads/master") -> str:
        result = subprocess.run(["git", "--git-dir", str(self.home / "repos" / f"{app}.git"), "rev-parse",
                                 "--verify", "--quiet", ref], capture_output=True, text=True)
        return result.stdout.strip()


def step_cached(output: str, instruction: str) -> bool:
    """Whether a build (its builder's own output, `Paas.builder_log`, either builder's) reused the cached
    layer of the step that runs `instruction` (`RUN npm ci`: the keyword, then text its line holds after the
    flags): BuildKit says `#7 CACHED` under `#7 [build 4/5] RUN ...`; the legacy builder says `Using cache` after
    `Step 4/9 : RUN ...`."""
    keyword, _, rest = instruction.partition(" ")
    step = re.search(rf"#(\d+) \[[^\]]*\] {re.escape(keyword)} (?:--mount=\S+ )*[^\n]*?{re.escape(rest)}", output)
    if step:
        return re.search(rf"^(?:remote: +)?#{step.group(1)} CACHED\b", output, re.M) is not None
    legacy = re.search(rf"Step \d+/\d+ : {re.escape(keyword)} [^\n]*?{re.escape(rest)}[^\n]*\n", output)
    return bool(legacy) and "Using cache" in output[legacy.end():].split("Step", 1)[0]


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@minipaas.test", *args],
                          cwd=path, check=True, capture_output=True, text=True).stdout


def commit(path: Path, message: str) -> str:
    git(path, "add", "-A")
    git(path, "commit", "-q", "--allow-empty", "-m", message)
    return git(path, "rev-parse", "HEAD").strip()


# Tests that need the Docker engine (and nginx): every test using one of these fixtures, and every test
# of a module marked `pytestmark = pytest.mark.engine`. `pytest -m "not engine"` runs the rest, the fast tier.
ENGINE_FIXTURES = frozenset({"paas", "sshd", "engine_ready"})
IN_CI = os.environ.get("MINIPAAS_CI") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


# Two workers (README's test command: `-n 2`), each running one queue in the order written: the cluster's modules,
# whose apps run on dockerd nodes in containers (of this host's engine they only read: node containers, image
# copies), and every other test, one after another (some change what the whole engine holds: base images, gc, an
# engine restart). The cluster's ~10 minutes then run beside the rest.
CLUSTER_MODULES = "tests/test_cluster"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class TwoQueues(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "cluster" if nodeid.startswith(CLUSTER_MODULES) else "host"

    return TwoQueues(config, log)


def pytest_configure(config: pytest.Config) -> None:
    """With workers, a folder where each says it is done (the workers inherit its name), removed at the end."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ["MINIPAAS_TESTS_WORKERS"] = tempfile.mkdtemp(prefix="minipaas-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ and "MINIPAAS_TESTS_WORKERS" in os.environ:
        shutil.rmtree(os.environ.pop("MINIPAAS_TESTS_WORKERS"), ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder, worker = os.environ.get("MINIPAAS_TESTS_WORKERS"), os.environ.get("PYTEST_XDIST_WORKER")
    if folder and worker:
        (Path(folder) / worker).touch()


@pytest.fixture
def engine_to_itself() -> None:
    """For a test that restarts the Docker engine: wait until the other workers ran all their tests (the cluster's
    node containers would die with the engine)."""
    folder, me = os.environ.get("MINIPAAS_TESTS_WORKERS"), os.environ.get("PYTEST_XDIST_WORKER")
    if not folder or not me:
        return
    others = {f"gw{i}" for i in range(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))} - {me}
    deadline = time.monotonic() + 3600
    while not all((Path(folder) / other).exists() for other in others):
        if time.monotonic() > deadline:
            pytest.fail(f"the other workers ({', '.join(sorted(others))}) did not finish within an hour")
        time.sleep(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (MINIPAAS_CI=1) a skip is a failure: a missing engine, chromium, pebble or wrk must not hide
    the tests that need them. On a laptop they may skip."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI (MINIPAAS_CI=1), which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """In CI, a module that skips itself as a whole (no chromium, no selenium) fails its collection."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (MINIPAAS_CI=1), which counts as a failure: {reason}"


@functools.cache
def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def engine_ready() -> None:
    """The Docker engine answers, and the default base image exists (made once per run)."""
    if not _engine_answers():
        pytest.skip("no Docker engine answers: run ./install.sh --deps-only (or start dockerd)")
    _default_base_image()


@pytest.fixture(autouse=True)
def _engine_for_marked(request: pytest.FixtureRequest) -> None:
    """Engine tests get the engine (or skip without one); fast-tier tests never wait for it."""
    if request.node.get_closest_marker("engine") is not None:
        request.getfixturevalue("engine_ready")


def _default_base_image() -> None:
    """The default base image (the newest release of MINIPAAS_NODE_MAJOR, also tagged minipaas/node:26),
    made once per run by `minipaas stack:build` in a throwaway home: a second on a host that has it, a
    build (about a minute) on one that does not. Tests then never depend on what the host had."""
    top = Path(tempfile.mkdtemp(prefix="minipaas-stack-", dir="/var/tmp"))
    env = {**os.environ, "MINIPAAS_HOME": str(top / "home")}
    if os.path.exists(CA):
        env["MINIPAAS_BUILD_CA"] = CA
    try:
        result = subprocess.run([sys.executable, "-m", "minipaas", "stack:build"], env=env, text=True,
                                capture_output=True, timeout=1800)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    if result.returncode != 0:
        pytest.exit(f"cannot make the default base image (minipaas stack:build):\n{result.stdout}{result.stderr}", 2)


def _own_processes(home: Path, marker: bytes) -> list[int]:
    """Processes this test's minipaas started with this home (background retirers), by their environment."""
    wanted = f"MINIPAAS_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0") and marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def paas_host(work: Path, top: Path | None = None, **env_overrides: str) -> Iterator[Paas]:
    """A minipaas host of its own (a home, a work dir, a private nginx on a free port); on the way out its
    containers, images, nginx masters and background retirers go, and its home is removed. `top`: the folder to
    make the home in (a small filesystem the test mounted), else a new one in /var/tmp."""
    # nginx's workers run as www-data (MINIPAAS_NGINX_USER) and must pass through every folder above
    # the home: pytest's tmp_path is inside a 0700 folder, so the home lives in /var/tmp instead,
    # in a folder others may pass through but not list (the home itself is 0710 root:www-data).
    top = top or Path(tempfile.mkdtemp(prefix="minipaas-", dir="/var/tmp"))
    top.chmod(0o711)
    home = top / "home"
    work.mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "MINIPAAS_HOME": str(home),
        "MINIPAAS_NGINX": "private",
        "MINIPAAS_HTTP_PORT": str(port),
        # Each test's nginx would take the same loopback port for Prometheus: none, unless a test asks for one.
        "MINIPAAS_METRICS_PORT": "0",
        "MINIPAAS_DOMAIN": "paas.test",
        "GIT_TERMINAL_PROMPT": "0",
        **env_overrides,
    }
    if os.path.exists(CA):
        env["MINIPAAS_BUILD_CA"] = CA
    instance = Paas(home=home, port=port, env=env, work=work)
    try:
        instance.run("init")
        yield instance
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # an engine gone away: clean up the rest
            for container in instance.containers():
                subprocess.run(["docker", "rm", "-f", container], capture_output=True)
            # A build stage's image that another of them is built on is refused while the child is there
            # ("has dependent child images"): a second pass takes it.
            for _ in range(3):
                images = docker("images", "-q", "--filter", f"label=minipaas={home}").split()
                if not images:
                    break
                subprocess.run(["docker", "rmi", "-f", *sorted(set(images))], capture_output=True)
            # The apps' networks (a /26 each of MINIPAAS_SUBNETS: a run that left them would run out).
            networks = docker("network", "ls", "-q", "--filter", f"label=minipaas={home}").split()
            if networks:
                subprocess.run(["docker", "network", "rm", *networks], capture_output=True)
            # The services' data volumes (postgres:create, redis:create).
            volumes = docker("volume", "ls", "-q", "--filter", f"label=minipaas={home}").split()
            if volumes:
                subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True)
        for pid_file in (home / "nginx" / "run").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), 3)  # SIGQUIT: graceful stop
        # The dashboard (ps:restore starts it): by its environment too, in case its pid file was not written yet.
        for pid in _own_processes(home, b"retire") + _own_processes(home, b"watch") + \
                _own_processes(home, b"dashboard"):
            with contextlib.suppress(OSError):
                os.kill(pid, 15)  # a retirer still in its drain delay: its containers are gone already
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def paas(tmp_path: Path, engine_ready: None) -> Iterator[Paas]:
    with paas_host(tmp_path / "work") as instance:
        yield instance


@pytest.fixture
def local_account() -> Iterator[str]:
    """A real local account (no home, no shell) with no business on this host's minipaas: what another user of
    the machine, or a compromised service, can do."""
    name = f"mpacc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@dataclass
class Sshd:
    """A real OpenSSH server on a free loopback port, with its own host key and authorized_keys."""

    port: int
    dir: Path
    known_hosts: Path
    host_key_pub: str
    process: subprocess.Popen[bytes]

    def key(self, name: str) -> Path:
        path = self.dir / f"{name}_key"
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
        return path

    def ssh_args(self, name: str, *, tty: bool = False) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.key(name)),
                "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                *(["-tt"] if tty else ["-T"]), "root@127.0.0.1"]

    def ssh(self, name: str, *command: str, input: str | bytes | None = None, tty: bool = False,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run([*self.ssh_args(name, tty=tty), *command], input=data, capture_output=True,
                                timeout=timeout)
        return subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode("utf-8", "replace"),
                                           result.stderr.decode("utf-8", "replace"))

    def git_env(self, base: dict[str, str], name: str) -> dict[str, str]:
        return {**base, "GIT_SSH_COMMAND": " ".join(self.ssh_args(name)[:-2])}

    def url(self, app: str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}/{app}"


@contextlib.contextmanager
def sshd_server(folder: Path) -> Iterator[Sshd]:
    """A real OpenSSH server on a free loopback port, its files (host key, authorized_keys) in `folder`."""
    folder.mkdir()
    host_key = folder / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    port = free_port()
    keys_file = folder / "authorized_keys"
    config = folder / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder}/sshd.pid
AuthorizedKeysFile {keys_file}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin forced-commands-only
AllowUsers root
UsePAM no
PermitUserEnvironment no
LogLevel ERROR
""")
    os.makedirs("/run/sshd", exist_ok=True)
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    pub = (folder / "host_ed25519.pub").read_text().split()
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield Sshd(port=port, dir=folder, known_hosts=known, host_key_pub=f"{pub[0]} {pub[1]}", process=process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def ssh_entry() -> str:
    """MINIPAAS_SSH_ENTRY for tests: this checkout's minipaas, with no MINIPAAS_HOME (as under sudo, which passes
    none on: the key's line names its instance). sshd starts the forced command with a clean environment:
    PYTHONPATH is passed on, so that the code under test (a checkout run with PYTHONPATH) answers over ssh
    too, not whatever is installed."""
    python_path = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return f"env {python_path}{sys.executable} -m minipaas"


def serve_ssh(paas: Paas, server: Sshd) -> None:
    """Keys `paas` adds from now on go to `server`'s authorized_keys."""
    paas.env["MINIPAAS_AUTHORIZED_KEYS"] = str(server.dir / "authorized_keys")
    paas.env["MINIPAAS_SSH_ENTRY"] = ssh_entry()


@pytest.fixture
def sshd(paas: Paas, tmp_path: Path) -> Iterator[Sshd]:
    with sshd_server(tmp_path / "sshd") as server:
        serve_ssh(paas, server)
        yield server
