"""Postgres backups off the host, against a real S3-compatible server (moto's server mode, request signing
enforced): keys and a target, each backup uploaded with its sha256, the store's retention, a restore from it into
a fresh service, a checksum that does not match, keys or a bucket that refuse, the monthly test restore."""

from __future__ import annotations

import datetime
import subprocess

from tests.helpers.addons import SEED, _service_images, checksum, one_line_error, sql, wait_for  # noqa: F401 (the module fixture)
from tests.helpers.host import Paas
from tests.helpers.s3server import s3_server


def test_backups_go_to_the_store_and_come_back_into_a_fresh_service(paas: Paas) -> None:
    outputs: list[str] = []

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = paas.run(*args, check=check, input=input)
        outputs.append(result.stdout + result.stderr)
        return result

    with s3_server() as store:
        run("postgres:create", "db")
        sql(paas, "db", SEED)
        # an untrusted extension, which only the superuser may make (the test restore makes it so in its scratch
        # database; a fresh service needs it made first, as `postgres:connect --superuser` does)
        paas.run("postgres:connect", "db", "--superuser", input="CREATE EXTENSION pageinspect;\n")
        rows = checksum(paas, "db")
        auth = ("--endpoint", store.endpoint)
        early = run("postgres:backup-target", "db", f"s3://{store.bucket}/n", check=False)
        assert "backup-auth" in one_line_error(early)
        assert "s3://BUCKET" in one_line_error(run("postgres:backup-target", "db", "ftp://x/y", check=False))
        said = run("postgres:backup-auth", "db", store.access_key, store.secret_key, *auth).stdout
        assert f"access key {store.access_key[:4]}…" in said and store.access_key not in said
        assert "no such bucket" in one_line_error(run("postgres:backup-target", "db", "s3://no-such-bucket/n",
                                                      check=False))
        run("postgres:backup-target", "db", f"s3://{store.bucket}/nightly/")
        info = run("postgres:info", "db").stdout
        assert f"s3://{store.bucket}/nightly" in info and f"set (access key {store.access_key[:4]}…)" in info
        assert store.access_key not in info

        # Three backups a second apart, a retention of 2: the store keeps the newest two, each with its sha256.
        run("postgres:backup-retention", "db", "2")
        taken: list[str] = []
        for _ in range(3):
            second = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            wait_for("the next second", lambda s=second: datetime.datetime.now(datetime.UTC) - s
                     >= datetime.timedelta(seconds=1), timeout=5)
            out = run("postgres:backup", "db").stdout
            taken.append(out.split("db: ")[1].split(" ")[0])
            assert f"Uploaded to s3://{store.bucket}/nightly/db/{taken[-1]}" in out, out
        assert store.keys("nightly/") == [f"nightly/db/{name}" for name in taken[1:]]
        local = paas.home / "services" / "postgres" / "db" / "backups"
        head = store.client().head_object(Bucket=store.bucket, Key=f"nightly/db/{taken[-1]}")
        assert head["Metadata"]["sha256"] == (local / f"{taken[-1]}.sha256").read_text().split()[0]

        # A wrong secret key: refused by the store, one line, the keys kept as they were.
        info = run("postgres:info", "db").stdout
        assert "does not match" in one_line_error(run("postgres:backup-auth", "db", store.access_key, "wrong" * 8,
                                                      *auth, check=False))
        assert run("postgres:info", "db").stdout == info

        # Into a fresh service: the newest under the folder, checked, the same rows.
        run("postgres:create", "fresh")
        paas.run("postgres:connect", "fresh", "--superuser", input="CREATE EXTENSION pageinspect;\n")
        run("postgres:backup-auth", "fresh", store.access_key, "-", *auth, input=f"{store.secret_key}\n")  # stdin
        restored = run("postgres:restore", "fresh", f"s3://{store.bucket}/nightly/db").stdout
        assert f"The newest backup in s3://{store.bucket}/nightly/db/ is {taken[-1]}" in restored, restored
        assert checksum(paas, "fresh") == rows

        # An object whose sha256 does not match is refused before anything changes.
        sql(paas, "fresh", "DELETE FROM t WHERE id <= 10;")
        changed = checksum(paas, "fresh")
        store.client().copy_object(Bucket=store.bucket, Key=f"nightly/db/{taken[-1]}", MetadataDirective="REPLACE",
                                   CopySource={"Bucket": store.bucket, "Key": f"nightly/db/{taken[-1]}"},
                                   Metadata={"sha256": "0" * 64})
        url = f"s3://{store.bucket}/nightly/db/{taken[-1]}"
        assert "does not match its sha256" in one_line_error(run("postgres:restore", "fresh", url, check=False))
        assert checksum(paas, "fresh") == changed

        # The monthly test restore (by the daily timer: never checked, so due; then by hand): the newest in the
        # store, into a scratch database dropped after; an event either way (the tampered one first, then as it was).
        due = run("services:backup-due", check=False)
        assert due.returncode == 1 and "test restore failed" in due.stdout, due.stdout + due.stderr
        assert "backup-failed db" in run("events").stdout
        store.client().copy_object(Bucket=store.bucket, Key=f"nightly/db/{taken[-1]}", MetadataDirective="REPLACE",
                                   CopySource={"Bucket": store.bucket, "Key": f"nightly/db/{taken[-1]}"},
                                   Metadata={"sha256": head["Metadata"]["sha256"]})
        verified = run("postgres:backup-verify", "db").stdout
        assert f"{taken[-1]} restored into a scratch database: 1 table" in verified, verified
        assert "backup-verified db" in run("events").stdout
        assert "_minipaas_verify" not in sql(paas, "db", "\\l")
        assert "ok (" in run("postgres:info", "db").stdout
        assert "Test restore" not in run("services:backup-due").stdout  # checked: not due for 30 days

        # A bucket that refuses: one line, the local backup kept.
        for key in store.keys(""):
            store.client().delete_object(Bucket=store.bucket, Key=key)
        store.client().delete_bucket(Bucket=store.bucket)
        before = sorted(p.name for p in local.glob("*.dump"))
        line = one_line_error(run("postgres:backup", "db", check=False))
        assert "no such bucket" in line and "is kept" in line, line
        assert len(sorted(p.name for p in local.glob("*.dump"))) == len(before) + 1

    outputs.append(run("events").stdout)
    assert not [out for out in outputs if store.secret_key in out]
