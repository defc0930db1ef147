"""A real S3-compatible server for tests: moto's server mode (PyPI `moto[server]`) on 127.0.0.1 and a free
port, with request signing enforced (its IAM checks are on once the setup's requests are done): a user whose
access key may do anything in S3, and a bucket made with it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.host import free_port

_SETUP_REQUESTS = 4  # create_user, create_access_key, put_user_policy, create_bucket: unsigned-checked; then all are
_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def keys(self, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@contextmanager
def s3_server(bucket: str = "minipaas-backups") -> Iterator[S3Server]:
    import boto3

    port = free_port()
    program = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen([str(program), "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # a TCP connect, not a request: each request counts against the unchecked ones
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("moto_server did not start") from None
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="backups")
        key = iam.create_access_key(UserName="backups")["AccessKey"]
        iam.put_user_policy(UserName="backups", PolicyName="s3", PolicyDocument=_POLICY)
        found = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], bucket)
        found.client().create_bucket(Bucket=bucket)
        yield found
    finally:
        server.terminate()
        server.wait(timeout=30)
