#!/usr/bin/env python3
"""Uploading a backup to an S3-compatible store: peak memory and time of minipaas' streamed upload
(adapters/s3.upload: boto3's multipart upload from the file, 16 MiB parts) against the baseline of reading the
whole dump into memory and sending it in one PUT (what "no whole dump in memory" avoids). Each upload runs in a
process of its own (its peak RSS is its own, ru_maxrss), to a local moto server (tests/helpers/s3server.py) with a
file of random bytes (a compressed dump does not compress further).

    /opt/minipaas/venv/bin/python bench/s3_upload.py [--mib 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
from minipaas.adapters import s3
endpoint, access, secret, bucket, path, how = sys.argv[1:]
creds = s3.Credentials(access, secret, "", endpoint)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
if how == "streamed":
    with open(path, "rb") as source:
        s3.upload(creds, bucket, "bench/streamed.dump", source, {"sha256": "0" * 64})
else:
    body = open(path, "rb").read()
    s3._client(creds).put_object(Bucket=bucket, Key="bench/whole.dump", Body=body, Metadata={"sha256": "0" * 64})
seconds = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "growth_mib": (peak - base) / 1024}))
"""


def main() -> None:
    from tests.helpers.s3server import s3_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, s3_server() as store:
        dump = Path(work) / "x.dump"
        with open(dump, "wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(1 << 20))
        found: dict[str, list[dict[str, float]]] = {"streamed": [], "whole": []}
        for _ in range(args.runs):
            for how in found:
                out = subprocess.run([sys.executable, "-c", CHILD, store.endpoint, store.access_key, store.secret_key,
                                      store.bucket, str(dump), how], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
                found[how].append(json.loads(out))
    base = {key: statistics.median(r[key] for r in found["whole"]) for key in ("seconds", "peak_mib", "growth_mib")}
    print(f"{args.mib} MiB dump, {args.runs} runs, medians; ratio = against reading it whole (one PUT)")
    print(f"{'upload':<10} {'seconds':>8} {'ratio':>6} {'peak RSS MiB':>13} {'growth MiB':>11} {'ratio':>6}")
    for how, runs in found.items():
        median = {key: statistics.median(r[key] for r in runs) for key in base}
        print(f"{how:<10} {median['seconds']:>8.2f} {median['seconds'] / base['seconds']:>6.2f} "
              f"{median['peak_mib']:>13.0f} {median['growth_mib']:>11.0f} "
              f"{median['growth_mib'] / base['growth_mib']:>6.2f}")


if __name__ == "__main__":
    main()
