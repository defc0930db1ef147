"""A minipaas host of its own for a test (a temp MINIPAAS_HOME, a private nginx on a free loopback port) driven
through the real CLI and real git pushes, and the small tools tests share: git, docker, free ports, the house's
refusal."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
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



def own_processes(home: Path, marker: bytes) -> list[int]:
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
        # The log drains' shipper (an rsyslogd of this home, running/drains.py) ends on SIGTERM, not SIGQUIT.
        for pid in own_processes(home, b"retire") + own_processes(home, b"watch") + \
                own_processes(home, b"dashboard") + own_processes(home, b"/usr/sbin/rsyslogd"):
            with contextlib.suppress(OSError):
                os.kill(pid, 15)  # a retirer still in its drain delay: its containers are gone already
        shutil.rmtree(top, ignore_errors=True)


