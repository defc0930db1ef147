"""Secrets, hidden files and quotas without an engine: the config marks and what a review app a deployer pushed
receives (SQLite only), migration 11, the files a site leaves out, the nginx rule for dot paths (its regular
expression against a table of paths), and the one-line refusals of the quotas. The same rules are checked through
real pushes in test_review_secrets.py, test_site_dotfiles.py and test_quotas.py."""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from minipaas.errors import BuildFailed, Conflict, InvalidInput
from minipaas.routing import nginxconf, sites
from minipaas.state import apps, config, reviews, services, store
from minipaas.state import settings as settings_mod
from minipaas.state.host import Host
from tests.helpers.nginx_specs import STATIC, SYSTEM
from tests.helpers.stores import store_host


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    h = store_host(tmp_path, monkeypatch, "shop")
    reviews.insert(h, name="shop--topic", parent="shop", branch="topic", domain="topic.shop.example")
    return h


def test_a_value_is_secret_only_when_marked_and_keeps_its_mark_when_set_again(host: Host) -> None:
    config.set_many(host, "shop", {"GREETING": "hi"})
    config.set_many(host, "shop", {"TOKEN": "t1"}, secret=True)
    assert config.entries(host, "shop") == {"GREETING": config.Value("hi", False), "TOKEN": config.Value("t1", True)}
    assert config.set_many(host, "shop", {"TOKEN": "t2"})  # rotated: still secret
    assert config.entries(host, "shop")["TOKEN"] == config.Value("t2", True)
    assert config.set_many(host, "shop", {"TOKEN": "t2"}, secret=False)  # only the mark changed: a change
    assert not config.entries(host, "shop")["TOKEN"].secret
    assert not config.set_many(host, "shop", {"TOKEN": "t2"})


def test_a_review_app_a_deployer_pushed_gets_no_secret_value_its_parents_nor_its_own(host: Host) -> None:
    config.set_many(host, "shop", {"GREETING": "hi", "OVERRIDDEN": "parent"})
    config.set_many(host, "shop", {"SECRET": "s3cret"}, secret=True)
    config.set_many(host, "shop--topic", {"OVERRIDDEN": "own"})
    config.set_many(host, "shop--topic", {"OWN_SECRET": "x"}, secret=True)
    everything = {"GREETING": "hi", "OVERRIDDEN": "own", "OWN_SECRET": "x", "SECRET": "s3cret"}
    assert config.get_all(host, "shop--topic") == everything  # an admin's push: as before
    assert config.withheld(host, "shop--topic") == []

    assert reviews.mark_deployer_pushed(host, "shop--topic")
    assert not reviews.mark_deployer_pushed(host, "shop--topic")  # sticky, said once
    assert config.get_all(host, "shop--topic") == {"GREETING": "hi", "OVERRIDDEN": "own"}
    assert config.withheld(host, "shop--topic") == ["OWN_SECRET", "SECRET"]
    assert config.get_all(host, "shop")["SECRET"] == "s3cret"  # the parent keeps everything
    assert not reviews.receives_parent_services(host, "shop--topic")


def test_a_service_links_url_is_always_secret(host: Host) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO services (kind, name, version, password, created_at) "
                   "VALUES ('redis', 'c', '7', 'pw', 0)")
        db.execute("INSERT INTO service_links (kind, name, app, env_key) VALUES ('redis', 'c', 'shop', 'REDIS_URL')")
    config.set_many(host, "shop", {"REDIS_URL": "redis://:pw@c:6379"})
    assert config.entries(host, "shop")["REDIS_URL"].secret
    with pytest.raises(InvalidInput, match="REDIS_URL is set by a service link, whose URL is always secret"):
        config.set_many(host, "shop", {"REDIS_URL": "redis://:pw@c:6379"}, secret=False)
    assert config.entries(host, "shop")["REDIS_URL"].secret


def test_a_rollback_puts_values_back_with_their_marks_and_keeps_what_a_deployers_review_app_never_got(
        host: Host) -> None:
    config.set_many(host, "shop", {"A": "1"})
    config.set_many(host, "shop", {"S": "s"}, secret=True)
    saved = config.snapshot(host, "shop")
    config.replace_all(host, "shop", {"A": "0", "GONE": "g"})  # a release's config of its time
    assert config.entries(host, "shop") == {"A": config.Value("0", False), "GONE": config.Value("g", True)}
    config.restore(host, "shop", saved)
    assert config.entries(host, "shop") == {"A": config.Value("1", False), "S": config.Value("s", True)}

    config.set_many(host, "shop--topic", {"OWN_SECRET": "x"}, secret=True)
    reviews.mark_deployer_pushed(host, "shop--topic")
    config.replace_all(host, "shop--topic", config.get_all(host, "shop--topic"))
    assert config.own_entries(host, "shop--topic") == {"OWN_SECRET": config.Value("x", True)}


def test_migration_11_hides_every_value_there_was_and_withholds_from_review_apps_a_deployer_may_push() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    for script in store.MIGRATIONS[:10]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 10")
    for name, parent in (("granted", None), ("granted--b", "granted"), ("pushed", None), ("pushed--b", "pushed"),
                         ("admins", None), ("admins--b", "admins")):
        conn.execute("INSERT INTO apps (name, created_at, parent, branch) VALUES (?, 0, ?, ?)",
                     (name, parent, "b" if parent else None))
    conn.execute("INSERT INTO config (app, key, value) VALUES ('granted', 'SECRET', 'x'), ('admins', 'PLAIN', 'y')")
    conn.execute("INSERT INTO ssh_keys (name, role, fingerprint, key_type, key_data, created_at) VALUES "
                 "('ci', 'deployer', 'f1', 't', 'd', 0), ('root', 'admin', 'f2', 't', 'd', 0)")
    conn.execute("INSERT INTO key_grants (name, app) VALUES ('ci', 'granted')")
    conn.execute("INSERT INTO events (at, user, app, command) VALUES (0, 'gone', 'pushed', 'git-receive-pack pushed'), "
                 "(0, 'root', 'admins', 'git-receive-pack admins')")
    assert store.migrate(conn) == len(store.MIGRATIONS)
    assert {row["secret"] for row in conn.execute("SELECT secret FROM config")} == {1}
    marked = {row["name"] for row in conn.execute("SELECT name FROM apps WHERE deployer_pushed = 1")}
    assert marked == {"granted--b", "pushed--b"}


def test_review_apps_limit_refuses_the_branch_beyond_it_in_one_line(host: Host) -> None:
    from minipaas.deploy import reviewapps

    apps.set_setting(host, "shop", "review-apps-limit", "2")
    reviewapps.check_room(host, "shop", ["topic", "second"])  # topic has its review app: one new, two in all
    with pytest.raises(Conflict) as refused:
        reviewapps.check_room(host, "shop", ["topic", "second", "third"])
    assert refused.value.message == (
        "shop has 1 review apps and review-apps-limit is 2: second gets none; delete a branch (git push paas "
        ":BRANCH), or an admin raises it: minipaas settings:set shop review-apps-limit 3")
    assert apps.get_setting(host, "shop--topic", "review-apps-limit") == "2"  # the parent's, always
    for bad in ("0", "1001", "x"):
        with pytest.raises(InvalidInput):
            apps.set_setting(host, "shop", "review-apps-limit", bad)


def test_max_containers_counts_every_process_type_together(host: Host) -> None:
    from minipaas.deploy import formation

    assert apps.get_setting(host, "shop", "max-containers") == "20"
    formation.check_quota(host, "shop", {"web": 10, "worker": 10})
    with pytest.raises(Conflict) as refused:
        formation.check_quota(host, "shop", {"web": 19, "worker": 19, "clock": 19})
    assert refused.value.message == (
        "shop would run 57 containers (web=19 worker=19 clock=19), more than its max-containers (20); it can be "
        f"raised to {apps.MAX_CONTAINERS} at most")
    with pytest.raises(Conflict, match=r"\(web=3 worker=19\), more than its max-containers \(20\); an admin may raise "
                                       r"it: minipaas settings:set shop max-containers 22$"):
        formation.check_quota(host, "shop", {"web": 3, "worker": 19, "clock": 0})
    apps.set_setting(host, "shop", "max-containers", "22")
    formation.check_quota(host, "shop", {"web": 3, "worker": 19})
    with pytest.raises(InvalidInput):
        apps.set_setting(host, "shop", "max-containers", str(apps.MAX_CONTAINERS + 1))


def test_a_site_leaves_out_every_dotfile_and_dot_folder_but_well_known(tmp_path: Path) -> None:
    root = tmp_path / "site"
    for path in ("index.html", ".env", ".npmrc", ".git-credentials", ".ssh/id_rsa", ".git/config", "a/.git/config",
                 "a/b/.env", "a/page.html", ".well-known/security.txt", ".well-known/.secret",
                 ".well-known/acme/.x/y", "a/.well-known/z"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)
    (root / ".hidden-link").symlink_to("index.html")
    removed = sites.drop_hidden(root)
    assert removed == [".env", ".git-credentials", ".git/", ".hidden-link", ".npmrc", ".ssh/", ".well-known/.secret",
                       ".well-known/acme/.x/", "a/.git/", "a/.well-known/", "a/b/.env"]
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == [".well-known/security.txt", "a/page.html", "index.html"]


def test_a_docs_site_copies_well_known_as_files_and_no_other_dot_entry(tmp_path: Path) -> None:
    from minipaas.build.docsite import files

    for path in ("README.md", ".env", "guide/.secret.md", "guide/a.md", ".well-known/security.txt",
                 ".well-known/notes.md", ".well-known/.hidden", "guide/.well-known/x.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    markdown, other = files.scan(tmp_path)
    assert markdown == ["README.md", "guide/a.md"]
    assert other == [".well-known/notes.md", ".well-known/security.txt"]  # files as they are, not pages


def _dot_rule() -> re.Pattern[str]:
    text = nginxconf.site_conf(SYSTEM, STATIC)
    found = re.search(r'location ~ "(\^/\\\.well-known[^"]*)" \{\n\s*return 404;', text)
    assert found, text
    return re.compile(found.group(1))


@pytest.mark.parametrize(("path", "refused"), [
    ("/.env", True), ("/.npmrc", True), ("/.git-credentials", True), ("/.ssh/id_rsa", True), ("/.git/config", True),
    ("/a/.git/config", True), ("/a/b/.env", True), ("/.well-known/.secret", True), ("/.well-knownx/a", True),
    ("/a/.well-known/x", True), ("/.env.html", True), ("/.", True),
    ("/.well-known/security.txt", False), ("/.well-known/acme-challenge/tok_en-1", False), ("/.well-known", False),
    ("/", False), ("/index.html", False), ("/a/b.c/d.e", False), ("/file.", False), ("/a..b", False),
])
def test_the_nginx_rule_refuses_dot_paths_but_well_known(path: str, refused: bool) -> None:
    """nginx matches the decoded, normalized path ($uri): /%2eenv arrives here as /.env (the engine test sends
    the encoded forms through a real nginx)."""
    assert bool(_dot_rule().search(path)) == refused


def _tar(*members: tuple[str, bytes | None]) -> io.BytesIO:
    """A tar of regular files (bytes) and folders (None), by name as given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.type = tarfile.REGTYPE if data is not None else tarfile.DIRTYPE
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def test_an_archives_names_keep_their_dots_so_the_site_leaves_out_its_dotfiles(tmp_path: Path) -> None:
    # `./.env` is `.env`: reading `./` off with lstrip once turned it into `env`, which was served.
    sites.extract_tar(_tar(("./.env", b"SECRET=1"), ("././.git/config", b"x"), ("./../up", b"x"),
                           ("./index.html", b"hi")), tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [".env", ".git", ".git/config",
                                                                                 "index.html"]
    assert sites.drop_hidden(tmp_path) == [".env", ".git/"]


@pytest.mark.parametrize("members", [
    (("a", b"file"), ("a/b", b"under a file")),
    (("a", None), ("a", b"a file where a folder is")),
    (("x" * 300, b"a name too long for the filesystem"),),
])
def test_an_archive_entry_that_cannot_be_written_is_one_line(tmp_path: Path, members: tuple) -> None:
    with pytest.raises(BuildFailed) as refused:
        sites.extract_tar(_tar(*members), tmp_path)
    assert "\n" not in refused.value.message and refused.value.message.startswith("cannot write ")


@pytest.mark.parametrize("data", [b"", b"not a tar", _tar(("index.html", b"hi" * 400)).getvalue()[:700]])
def test_a_damaged_archive_is_one_line(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(BuildFailed) as refused:
        sites.extract_tar(io.BytesIO(data), tmp_path)
    assert "\n" not in refused.value.message and "damaged archive" in refused.value.message


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662", "1" * 5000, "+5", " 5", "5\n"])
def test_a_number_in_a_setting_is_ascii_digits_or_one_line(host: Host, value: str) -> None:
    # str.isdigit() takes `²` (int() refuses it: "internal error") and Arabic-Indic digits; 5000 digits pass
    # isdigit() and exceed int()'s limit.
    for key in ("pids", "healthcheck-timeout", "keep-releases"):
        with pytest.raises(InvalidInput) as refused:
            apps.set_setting(host, "shop", key, value)
        assert "\n" not in refused.value.message
    with store.transaction(host.db) as db:
        db.execute("INSERT OR IGNORE INTO services (kind, name, version, password, created_at) "
                   "VALUES ('redis', 'cache', '7', 'p', 0)")
    for key in ("pids", "backup-retention"):
        with pytest.raises(InvalidInput):
            services.set_setting(host, "redis", "cache", key, value)
    for variable in ("MINIPAAS_HTTP_PORT", "MINIPAAS_NODE_MAJOR"):
        with pytest.raises(InvalidInput) as refused:
            settings_mod.load({"MINIPAAS_HOME": str(host.settings.home), variable: value})
        assert "\n" not in refused.value.message
    from minipaas.deploy import formation
    apps.set_setting(host, "shop", "pids", "0100")  # ASCII digits, leading zeros and all, mean their number
    assert formation.limits(host, "shop").pids == 100


@pytest.mark.parametrize("value", ["0.0000000001", "0.001", "0.00", "1" * 400, "1025", "01", "1e3", "inf", " 1"])
def test_a_cpu_limit_the_engine_and_the_kernel_cannot_take_is_one_line(host: Host, value: str) -> None:
    # 0.0000000001 was 0 nano-CPUs (no limit at all) and a cpu.max quota of 0 (`max`); 400 digits an infinite
    # float, which no limit can be made of.
    with store.transaction(host.db) as db:
        db.execute("INSERT OR IGNORE INTO services (kind, name, version, password, created_at) "
                   "VALUES ('redis', 'cache', '7', 'p', 0)")
    for key in ("cpus", "build-cpus"):
        with pytest.raises(InvalidInput):
            apps.set_setting(host, "shop", key, value)
    with pytest.raises(InvalidInput):
        services.set_setting(host, "redis", "cache", "cpus", value)
    from minipaas.deploy import formation
    for honest in ("0.01", "0.5", "1.25", "1024"):
        apps.set_setting(host, "shop", "cpus", honest)
        apps.set_setting(host, "shop", "build-cpus", honest)
        services.set_setting(host, "redis", "cache", "cpus", honest)
        assert formation.limits(host, "shop").cpus == float(honest)


@pytest.mark.parametrize("value", ["1k", "6143k", "5m", "1" * 5000 + "m"])
def test_a_memory_limit_below_the_engines_least_is_one_line(host: Host, value: str) -> None:
    # The engine refuses less than 6 MiB ("Minimum memory limit allowed is 6MB"): the next deploy failed.
    with store.transaction(host.db) as db:
        db.execute("INSERT OR IGNORE INTO services (kind, name, version, password, created_at) "
                   "VALUES ('redis', 'cache', '7', 'p', 0)")
    with pytest.raises(InvalidInput):
        apps.set_setting(host, "shop", "memory", value)
    with pytest.raises(InvalidInput):
        services.set_setting(host, "redis", "cache", "memory", value)
    for honest in ("6m", "6144k", "1g"):
        apps.set_setting(host, "shop", "memory", honest)
        services.set_setting(host, "redis", "cache", "memory", honest)


@pytest.mark.parametrize("value", [".x", "a.lock", "a/.b", "a.", "x/y.lock/z", "a/b."])
def test_a_deploy_branch_no_git_ref_can_be_is_one_line(host: Host, value: str) -> None:
    # Stored before, and no push could ever deploy: git refuses such a ref (git check-ref-format).
    assert subprocess.run(["git", "check-ref-format", f"refs/heads/{value}"]).returncode != 0
    with pytest.raises(InvalidInput):
        apps.set_setting(host, "shop", "deploy-branch", value)
    for honest in ("main", "release/1.2", "-x", "a_b/c-d.e"):
        assert subprocess.run(["git", "check-ref-format", f"refs/heads/{honest}"]).returncode == 0
        apps.set_setting(host, "shop", "deploy-branch", honest)
