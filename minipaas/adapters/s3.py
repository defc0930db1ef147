"""An S3-compatible object store, through boto3 (AWS's own SDK: request signing, multipart uploads and retries
done by a well-kept library, not by hand): put a file (streamed in parts, never whole in memory) with metadata,
list, read a file back, delete, and check that a bucket answers.

Every refusal of the store (bad credentials, no such bucket, unreachable endpoint) becomes one `StoreRefused`
line naming the bucket and the store's own error code; the keys are never in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from minipaas.errors import MinipaasError

_PART = 8 * 1024 * 1024  # multipart uploads in parts of this size: memory stays at a few parts


class StoreRefused(MinipaasError):
    """The store said no (or could not be reached)."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = ""
    endpoint: str = ""  # "" is AWS itself


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def _client(creds: Credentials) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"} if creds.endpoint else {})
    return boto3.client("s3", aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                        region_name=creds.region or "us-east-1", endpoint_url=creds.endpoint or None, config=config)


def _refused(bucket: str, exc: Exception) -> StoreRefused:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        reason = {"403": "access denied (check the keys)", "404": "no such bucket",
                  "SignatureDoesNotMatch": "the secret key does not match (check the keys)",
                  "InvalidAccessKeyId": "unknown access key", "NoSuchBucket": "no such bucket",
                  "AccessDenied": "access denied (check the keys)"}.get(code, error.get("Message") or code)
        return StoreRefused(f"bucket {bucket} refused: {reason}")
    if isinstance(exc, BotoCoreError):
        return StoreRefused(f"bucket {bucket} could not be reached: {str(exc).splitlines()[0][:200]}")
    raise exc


def _errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def check(creds: Credentials, bucket: str, prefix: str) -> None:
    """The bucket lists for these keys (what every later call needs), or one line why not."""
    try:
        _client(creds).list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except _errors() as exc:
        raise _refused(bucket, exc) from None


def upload(creds: Credentials, bucket: str, key: str, source: IO[bytes], metadata: dict[str, str]) -> None:
    from boto3.s3.transfer import TransferConfig

    # Parts in flight bound the memory: 2 threads, and at most 4 parts read ahead (s3transfer's default, 10
    # parts of 8 MiB to 10 threads, held ~200 MiB for a 256 MiB dump: bench/s3_upload.py).
    config = TransferConfig(multipart_chunksize=_PART, multipart_threshold=_PART, max_concurrency=2)
    config.max_in_memory_upload_chunks = 4
    try:
        _client(creds).upload_fileobj(source, bucket, key, ExtraArgs={"Metadata": metadata}, Config=config)
    except _errors() as exc:
        raise _refused(bucket, exc) from None
    except Exception as exc:  # s3transfer wraps a failed part in its own errors
        raise StoreRefused(f"bucket {bucket} refused the upload: {str(exc).splitlines()[0][:200]}") from None


def listing(creds: Credentials, bucket: str, prefix: str) -> list[StoredObject]:
    """The objects under `prefix` (a folder: ending with /), one level only."""
    found = []
    try:
        pages = _client(creds).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            found += [StoredObject(item["Key"], int(item["Size"])) for item in page.get("Contents", [])]
    except _errors() as exc:
        raise _refused(bucket, exc) from None
    return found


def metadata(creds: Credentials, bucket: str, key: str) -> dict[str, str]:
    try:
        return dict(_client(creds).head_object(Bucket=bucket, Key=key).get("Metadata", {}))
    except _errors() as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise StoreRefused(f"s3://{bucket}/{key} does not exist") from None
        raise _refused(bucket, exc) from None


def download(creds: Credentials, bucket: str, key: str, out: IO[bytes]) -> None:
    try:
        _client(creds).download_fileobj(bucket, key, out)
    except _errors() as exc:
        raise _refused(bucket, exc) from None


def delete(creds: Credentials, bucket: str, key: str) -> None:
    try:
        _client(creds).delete_object(Bucket=bucket, Key=key)
    except _errors() as exc:
        raise _refused(bucket, exc) from None
