"""Off-host backups without a store: `s3://BUCKET/PREFIX` parsed, the objects retention removes, checksums, the
keys' checks, what `info` shows of them, the audit log's redaction, and the records kept (and unset)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from minipaas.access import events
from minipaas.addons import backups, offsite
from minipaas.errors import InvalidInput
from minipaas.state import offsite as records
from minipaas.state import services
from minipaas.state.host import Host
from tests.helpers.stores import store_host


@pytest.mark.parametrize(("url", "bucket", "prefix"), [
    ("s3://backups", "backups", ""), ("s3://backups/", "backups", ""), ("s3://my.bucket-1/nightly", "my.bucket-1",
                                                                          "nightly"),
    ("s3://backups/a/b/", "backups", "a/b"), ("s3://backups//x", "backups", "x"),
])
def test_targets_parse_to_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    target = offsite.parse_target(url)
    assert (target.bucket, target.prefix) == (bucket, prefix)
    assert offsite.parse_target(target.url()) == target


@pytest.mark.parametrize("url", ["", "backups/x", "S3://backups", "http://backups/x", "s3://", "s3://ab",
                                 "s3://Backups", "s3://-backups", "s3://back_ups", "s3://a..b", "s3://backups/a//b",
                                 "s3://backups/../x", "s3://backups/a b", "s3://backups/x\n", "s3://b/" + "x" * 600])
def test_bad_targets_are_one_line(url: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        offsite.parse_target(url)
    assert "\n" not in raised.value.message and len(raised.value.message) < 200


def test_a_services_objects_are_a_folder_of_its_own() -> None:
    assert offsite.folder_key(offsite.Target("b1b", "nightly/pg"), "db") == "nightly/pg/db/"
    assert offsite.folder_key(offsite.Target("b1b", ""), "db") == "db/"


def test_retention_in_the_store_removes_the_oldest_backups_only() -> None:
    folder = "n/db/"
    keys = [f"{folder}20261203T010000Z.dump", f"{folder}20261201T010000Z.dump", f"{folder}20261202T010000Z.dump",
            f"{folder}20261204T010000Z.dump.sha256", f"{folder}notes.txt", f"{folder}20261205T010000Z.rdb",
            "n/dbx/20261101T010000Z.dump"]
    stored = offsite.stored_backups(keys, folder)
    assert [b.name for b in stored] == ["20261201T010000Z.dump", "20261202T010000Z.dump", "20261203T010000Z.dump"]
    assert [b.name for b in backups.beyond_retention(stored, 2)] == ["20261201T010000Z.dump"]
    assert backups.beyond_retention(stored, 7) == []


def test_the_checksum_is_the_files_sha256(tmp_path: Path) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP" + bytes(range(256)) * 5000)  # more than one chunk
    assert backups.sha256(dump) == hashlib.sha256(dump.read_bytes()).hexdigest()


def test_keys_are_checked_and_shown_by_their_first_four_characters() -> None:
    offsite.check_keys("AKIAEXAMPLE", "s3cr3t/Key+x", "http://127.0.0.1:9000")
    offsite.check_keys("AKIAEXAMPLE", "s3cr3t", "")
    secret = "SeCrEt9"
    for access, given, endpoint in (("", secret, ""), ("a b", secret, ""), ("a", "", ""), ("a", f"{secret}\n", ""),
                                    ("a", secret, "ftp://x"), ("a", secret, "http://x y"), ("a", secret * 50, "")):
        with pytest.raises(InvalidInput) as raised:
            offsite.check_keys(access, given, endpoint)
        assert secret not in raised.value.message
    assert offsite.shown_key("AKIAEXAMPLE") == "AKIA…"


def test_the_audit_log_never_keeps_the_keys() -> None:
    argv = ["postgres:backup-auth", "db", "AKIAEXAMPLE", "s3cr3t", "--endpoint", "http://127.0.0.1:9000"]
    kept = events.redact(argv)
    assert kept[:2] == ["postgres:backup-auth", "db"] and "s3cr3t" not in kept and "AKIAEXAMPLE" not in kept
    assert "--endpoint" in kept


def test_the_monthly_check_is_due_after_thirty_days() -> None:
    assert offsite.due_for_check(0.0, 1e9)
    assert not offsite.due_for_check(1e9, 1e9 + 29 * 86400)
    assert offsite.due_for_check(1e9, 1e9 + 31 * 86400)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    found = store_host(tmp_path, monkeypatch, "hello")
    services.insert(found, services.POSTGRES, "db", "15")
    return found


def test_keys_and_target_are_kept_unset_and_shown_redacted(host: Host) -> None:
    assert records.auth(host, "postgres", "db") is None and records.target(host, "postgres", "db") == ""
    lines: list[str] = []
    offsite.set_auth(host, "postgres", "db", records.Auth("AKIAEXAMPLE", "s3cr3t", "", "http://127.0.0.1:1"),
                     lines.append)
    assert records.auth(host, "postgres", "db") == records.Auth("AKIAEXAMPLE", "s3cr3t", "", "http://127.0.0.1:1")
    shown = offsite.info(host, "postgres", "db")
    assert shown["backup-auth"] == "set (access key AKIA…)" and shown["backup-target"] == "-"
    assert not [line for line in lines + [str(v) for v in shown.values()] if "s3cr3t" in line or "AKIAEX" in line]
    # what `info` prints of the settings never includes the keys' records
    assert not set(services.SETTINGS) & {"s3-access-key", "s3-secret-key"}
    with pytest.raises(InvalidInput):
        offsite.set_target(host, "postgres", "db", "s3://x", lines.append)
    offsite.set_target(host, "postgres", "db", None, lines.append)
    offsite.clear_auth(host, "postgres", "db", lines.append)
    assert records.auth(host, "postgres", "db") is None
    records.set_check(host, "postgres", "db", 1e9, "ok")
    assert records.last_check(host, "postgres", "db") == (1e9, "ok")
    services.delete(host, "postgres", "db")
    assert records.last_check(host, "postgres", "db") == (0.0, "")


def test_a_store_that_cannot_be_reached_is_one_line_without_the_keys(tmp_path: Path) -> None:
    from minipaas.adapters import s3
    from tests.helpers.host import free_port

    creds = s3.Credentials("AKIAEXAMPLE", "SeCrEt9", "", f"http://127.0.0.1:{free_port()}")  # nothing listens
    with pytest.raises(s3.StoreRefused) as raised:
        s3.check(creds, "backups", "db/")
    message = raised.value.message
    assert message.startswith("bucket backups could not be reached") and "\n" not in message
    assert "SeCrEt9" not in message and "AKIAEXAMPLE" not in message
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP")
    with pytest.raises(s3.StoreRefused), open(dump, "rb") as source:
        s3.upload(creds, "backups", "db/x.dump", source, {"sha256": "0" * 64})
