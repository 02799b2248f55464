"""Media in a real S3 HTTP endpoint for tests: moto's standalone server (``moto[server]``) as a subprocess
on a free port, a fresh bucket per test, and the settings (or a worker's environment) pointing at it.

Import the fixtures into a test module: ``from tests.s3_media import moto_endpoint_fixture, s3_media_fixture``
(pytest finds them by their names, ``moto_endpoint`` and ``s3_media``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"  # moto accepts any key; nothing here is a secret


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"moto_server not listening after {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running moto S3 server (one for the session; each test gets its own bucket)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = Path(sys.executable).parent / "moto_server"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_listening(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class S3Media:
    """A bucket on the moto server that the settings' default storage now points at."""

    endpoint: str
    bucket: str
    client: Any  # boto3's S3 client, for looking at the bucket behind the app's back

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def storage_options(self) -> dict[str, Any]:
        return {
            "bucket_name": self.bucket,
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "addressing_style": "path",
            "signature_version": "s3v4",
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 300,
            "file_overwrite": True,
        }

    def environment(self) -> dict[str, str]:
        """What a worker process or a server needs in its environment to use this bucket."""
        return {
            "DEEPMINER_S3_BUCKET": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_ADDRESSING_STYLE": "path",
        }


def bucket_create(endpoint: str) -> S3Media:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Media(endpoint=endpoint, bucket=bucket, client=client)


@pytest.fixture(name="s3_media")
def s3_media_fixture(moto_endpoint: str, settings, media_root: Path, tmp_path: Path) -> S3Media:
    """Media in a fresh bucket for this test (MEDIA_ROOT stays an empty folder, checked by the tests)."""
    bucket = bucket_create(moto_endpoint)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": bucket.storage_options()},
    }
    settings.MEDIA_CACHE_DIR = tmp_path / "media-cache"
    return bucket
