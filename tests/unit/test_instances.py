"""Instances on one host stay apart (issue 19, item 11): each key's line names its instance (its home) and its
key's fingerprint, which ssh-command checks; sudo lets exactly those lines' commands through; the host's
nginx in system mode, the sudoers rule and the systemd units are an instance's own, or a second instance is
refused with one line naming the first; an upgrade rewrites the old lines."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipaas.access import keys, sudoers
from minipaas.errors import Conflict, InvalidInput
from minipaas.host import setup
from minipaas.host import units as hostunits
from minipaas.routing import nginxconf, proxy
from minipaas.state import locks
from minipaas.state.host import Host
from minipaas.state.settings import Settings, load


def fingerprint(public: str) -> str:
    return keys.parse_public_key(public).fingerprint


HOME = "/var/lib/minipaas"


def settings_at(home: Path, **env: str) -> Settings:
    return load({"MINIPAAS_HOME": str(home), **env})


def new_key(folder: Path, name: str) -> str:
    (folder / "keys").mkdir(exist_ok=True)
    path = folder / "keys" / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text()


@pytest.fixture
def own_host_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's shared locks in a folder of the test's (fast tier: /run/minipaas is left alone)."""
    folder = tmp_path / "host-locks"
    monkeypatch.setattr(locks, "host_locks", lambda: folder)
    return folder


# -- the key lines and the sudoers rule (no engine) -------------------------------------------

def _python_pattern(home: str) -> re.Pattern[str]:
    """The rule's argument pattern as Python reads it: the same for these constructs as sudo's POSIX ERE."""
    return re.compile(sudoers.arguments_pattern(home))


KEY_NAMES = st.from_regex(keys.KEY_NAME, fullmatch=True)
DIGESTS = st.binary(min_size=32, max_size=32)


@given(name=KEY_NAMES, digest=DIGESTS)
def test_the_sudoers_rule_lets_through_exactly_the_forced_commands_of_its_instance(name: str, digest: bytes) -> None:
    fp = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    command = keys.forced_command("sudo -n /usr/local/bin/minipaas", HOME, name, fp)
    arguments = command.removeprefix("sudo -n /usr/local/bin/minipaas ")
    rule = _python_pattern(HOME)
    assert rule.fullmatch(arguments)
    other = _python_pattern("/srv/minipaas-b")
    assert not other.fullmatch(arguments)  # another instance's rule does not let this key's line through
    for variant in (arguments + " x", arguments.replace(" --user ", " --user x --user "),
                    arguments.replace(HOME, HOME + "x"), arguments.replace(HOME, "/var/lib"),
                    arguments.replace(f"--fingerprint {fp}", f"--fingerprint {fp}A"),
                    f"ssh-command --user {name}", arguments.replace("--home", "--home=")):
        assert not rule.fullmatch(variant), variant


def test_a_home_named_in_key_lines_is_a_plain_path_and_dots_are_literal() -> None:
    rule = _python_pattern("/srv/a.b")
    fp = "SHA256:" + "A" * 43
    assert rule.fullmatch(f"ssh-command --home /srv/a.b --user x --fingerprint {fp}")
    assert not rule.fullmatch(f"ssh-command --home /srv/aXb --user x --fingerprint {fp}")
    for home in ("/srv/a b", "srv", "/srv/../etc", "/srv/a\"b", "/srv/$(id)", "/srv/./a"):
        with pytest.raises(InvalidInput):
            keys.forced_command("sudo -n /usr/local/bin/minipaas", home, "alice", fp)


def test_key_lines_name_their_instance_and_their_keys_fingerprint(tmp_path: Path, own_host_locks: Path) -> None:
    shared = tmp_path / "authorized_keys"
    first = Host(settings_at(tmp_path / "a", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    second = Host(settings_at(tmp_path / "b", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    for host in (first, second):
        host.settings.home.mkdir()
    key_a, key_b = new_key(tmp_path, "a"), new_key(tmp_path, "b")
    keys.add(first, "alice", "admin", key_a)
    keys.add(second, "alice", "deployer", key_b)  # the same name in another instance
    lines = [line for line in shared.read_text().splitlines() if line.startswith("command=")]
    entry = "sudo -n /usr/local/bin/minipaas"
    assert lines == [
        f'command="{entry} ssh-command --home {first.settings.home} --user alice --fingerprint {fingerprint(key_a)}",'
        f"restrict,pty {' '.join(key_a.split()[:2])} minipaas:alice",
        f'command="{entry} ssh-command --home {second.settings.home} --user alice --fingerprint {fingerprint(key_b)}",'
        f"restrict,pty {' '.join(key_b.split()[:2])} minipaas:alice",
    ]
    assert shared.stat().st_mode & 0o777 == 0o600
    # A home that no key line could name: refused with one line, and no key is added.
    odd = Host(settings_at(tmp_path / "with space", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    odd.settings.home.mkdir()
    with pytest.raises(InvalidInput, match="MINIPAAS_HOME"):
        keys.add(odd, "carol", "admin", new_key(tmp_path, "c"))
    assert keys.listing(odd) == []


def test_a_key_that_cannot_be_written_is_not_added(tmp_path: Path, own_host_locks: Path) -> None:
    target = tmp_path / "target"
    target.write_text("root's own file\n")
    shared = tmp_path / "authorized_keys"
    shared.symlink_to(target)  # planted by the account that owns the folder
    host = Host(settings_at(tmp_path / "a", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    host.settings.home.mkdir()
    with pytest.raises(Conflict, match="must be a file, not a symlink"):
        keys.add(host, "alice", "admin", new_key(tmp_path, "a"))
    assert keys.listing(host) == [] and target.read_text() == "root's own file\n"


def test_an_upgrade_rewrites_this_instances_old_lines_and_nothing_else(tmp_path: Path, own_host_locks: Path) -> None:
    shared = tmp_path / "authorized_keys"
    first = Host(settings_at(tmp_path / "a", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    second = Host(settings_at(tmp_path / "b", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    empty = Host(settings_at(tmp_path / "c", MINIPAAS_AUTHORIZED_KEYS=str(shared)))
    for host in (first, second, empty):
        host.settings.home.mkdir()
    key_a = new_key(tmp_path, "a")
    keys.add(first, "alice", "admin", key_a)
    keys.add(second, "bob", "admin", new_key(tmp_path, "b"))
    today = shared.read_text()
    # As an older minipaas wrote the first's line: no home, no fingerprint.
    old = today.replace(f" --home {first.settings.home}", "").replace(f" --fingerprint {fingerprint(key_a)}", "")
    assert old != today and "ssh-command --user alice\"" in old
    shared.write_text(old)
    assert keys.rewrite_on_upgrade(empty) is False and shared.read_text() == old  # no keys: the file is left alone
    assert keys.rewrite_on_upgrade(first) is True
    assert sorted(shared.read_text().splitlines()) == sorted(today.splitlines())


# -- the sudoers rule file, the units, the host's nginx: one instance's own (no engine) -------------

def test_the_sudoers_rule_file_is_the_instances_own(tmp_path: Path) -> None:
    folder = tmp_path / "sudoers.d"
    folder.mkdir()
    default = settings_at(Path(HOME))
    second = settings_at(tmp_path / "b")
    assert sudoers.path_for(default, folder) == folder / "minipaas"
    assert sudoers.path_for(second, folder) == folder / f"minipaas-{second.instance}"
    assert sudoers.install(second, "paas", "/usr/local/bin/minipaas", folder=folder) is True  # visudo accepted it
    assert sudoers.parse((folder / f"minipaas-{second.instance}").read_text()) == \
        sudoers.Installed("paas", "/usr/local/bin/minipaas", str(second.home))
    assert sudoers.install(second, "paas", "/usr/local/bin/minipaas", folder=folder) is False
    assert [p.name for p in folder.iterdir()] == [f"minipaas-{second.instance}"]  # no candidate left behind
    # A second home given the first one's instance name: refused with one line naming the first.
    clash = settings_at(tmp_path / "c", MINIPAAS_INSTANCE=second.instance)
    with pytest.raises(Conflict, match=f"serves the minipaas instance at {second.home}:"):
        sudoers.install(clash, folder=folder)
    # An older minipaas' rule (no home): it served the default home, whose upgrade rewrites it.
    (folder / "minipaas").write_text("Defaults:paas !requiretty\npaas ALL=(root) NOPASSWD: /usr/local/bin/minipaas "
                                     "^ssh-command --user [a-z][a-z0-9._-]{0,31}$\n")
    with pytest.raises(Conflict, match=f"serves the minipaas instance at {HOME}:"):
        sudoers.installed(settings_at(tmp_path / "d", MINIPAAS_INSTANCE="minipaas"), folder)
    assert sudoers.upgrade(default, folder) is True
    assert sudoers.parse((folder / "minipaas").read_text()) == \
        sudoers.Installed("paas", "/usr/local/bin/minipaas", HOME)
    assert "--fingerprint SHA256" in (folder / "minipaas").read_text()


def test_each_instance_has_its_own_units_and_a_second_of_one_name_is_refused(tmp_path: Path) -> None:
    default, second = settings_at(Path(HOME)), settings_at(tmp_path / "b")
    assert [f.path.name for f in hostunits.units(default)] == \
        ["minipaas-restore.service", "minipaas-renew.service", "minipaas-renew.timer"]
    assert [f.path.name for f in hostunits.units(second)] == [
        f"minipaas-{second.instance}-restore.service", f"minipaas-{second.instance}-renew.service",
        f"minipaas-{second.instance}-renew.timer"]
    restore = hostunits.units(second)[0].text
    assert f"Environment=MINIPAAS_HOME={second.home}\n" in restore and "ExecStart=/usr/local/bin/minipaas ps:restore" \
        in restore
    assert hostunits.cron(second).path == Path(f"/etc/cron.d/minipaas-{second.instance}-renew")
    assert hostunits.home_named(hostunits.cron(second).text) == str(second.home)

    units, cron = tmp_path / "system", tmp_path / "cron.d"
    units.mkdir()
    cron.mkdir()
    ran: list[list[str]] = []
    written = hostunits.install(second, lambda line: None, unit_dir=units, cron_dir=cron, systemd=True,
                                run=ran.append)
    assert [p.name for p in written] == [f.path.name for f in hostunits.units(second)]
    assert ran == [["systemctl", "daemon-reload"], ["systemctl", "enable", written[0].name],
                   ["systemctl", "enable", "--now", written[2].name]]
    assert hostunits.install(default, lambda line: None, unit_dir=units, cron_dir=cron, systemd=False) == \
        [cron / "minipaas-renew"]
    # Two homes given one instance name: the second is refused with one line naming the first, and writes nothing.
    clash = settings_at(tmp_path / "c", MINIPAAS_INSTANCE=second.instance)
    before = {p: p.read_text() for p in units.iterdir()}
    with pytest.raises(Conflict, match=f"serves the minipaas instance at {second.home}:"):
        hostunits.install(clash, lambda line: None, unit_dir=units, cron_dir=cron, systemd=True, run=ran.append)
    assert {p: p.read_text() for p in units.iterdir()} == before and len(ran) == 3


def test_init_refuses_what_another_instance_holds_before_it_writes_anything(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    units = tmp_path / "system"
    units.mkdir()
    first = tmp_path / "first"
    (units / "minipaas-twin-restore.service").write_text(f"[Service]\nEnvironment=MINIPAAS_HOME={first}\n")
    monkeypatch.setattr(hostunits, "UNIT_DIR", units)
    monkeypatch.setattr(sudoers, "SUDOERS_DIR", tmp_path / "sudoers.d")
    second = settings_at(tmp_path / "second", MINIPAAS_INSTANCE="twin", MINIPAAS_NGINX="private")
    with pytest.raises(Conflict, match=f"minipaas-twin-restore.service serves the minipaas instance at {first}:"):
        setup.init(lambda line: None, second)
    assert not second.home.exists()


def test_the_hosts_nginx_serves_one_instance_and_a_second_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    first = settings_at(tmp_path / "first", MINIPAAS_SYSTEM_NGINX_CONF=str(conf / "minipaas.conf"),
                        MINIPAAS_NGINX="system")
    text = nginxconf.system_include(first.home, proxy.layout(first))
    assert nginxconf.included_home(text) == str(first.home)
    # What an older minipaas wrote says the same.
    older = f"# minipaas apps (generated by `minipaas init`)\ninclude {HOME}/nginx/http.conf;\n"
    assert nginxconf.included_home(older) == HOME
    assert nginxconf.included_home(f"include {HOME}/nginx/http.conf;\n") is None  # not one of ours
    (conf / "minipaas.conf").write_text(text)
    proxy.check_system_nginx(first)  # its own: fine
    # A second instance in system mode, even with a file name of its own: one line naming the first, through
    # the real `minipaas init`, which writes nothing.
    second_home = tmp_path / "second"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "MINIPAAS_HOME": str(second_home), "MINIPAAS_NGINX": "system",
           "MINIPAAS_SYSTEM_NGINX_CONF": str(conf / "second.conf")}
    result = subprocess.run([sys.executable, "-m", "minipaas", "init"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"error: the host's nginx serves the minipaas instance at {first.home} already "
                             f"({conf / 'minipaas.conf'}): run this one (MINIPAAS_HOME {second_home}) with "
                             "MINIPAAS_NGINX=private\n")
    assert not second_home.exists() and sorted(p.name for p in conf.iterdir()) == ["minipaas.conf"]


# -- over the real sshd: two instances, one key name, two roles --------------------------------


