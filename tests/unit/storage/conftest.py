"""Fixtures of the storage tests: a location on each storage kind, and S3 endpoints that misbehave for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fabric_ray.config import StorageConfig
from fabric_ray.storage.fs import RetryPolicy, StorageLocation, open_location
from tests.conftest import _wait_port, free_port

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.01)


@pytest.fixture
def loc(storage_root) -> StorageLocation:
    """A fresh, empty location on the file system or on moto's S3 server."""
    return open_location(storage_root.uri, storage_root.config)


@pytest.fixture(scope="session")
def auth_s3() -> dict[str, Any]:
    """A second moto S3 server that CHECKS credentials, with one valid key, one key without rights, and a bucket.

    moto accepts any key unless ``INITIAL_NO_AUTH_ACTION_COUNT`` is set: then it serves that
    many requests unauthenticated (used here to create the IAM users) and afterwards verifies
    every request's access key and signature against its IAM users and their policies.
    """
    import boto3

    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "5"}
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="writer")
        writer = iam.create_access_key(UserName="writer")["AccessKey"]
        iam.put_user_policy(UserName="writer", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        iam.create_user(UserName="nobody")  # no policy: authenticated, allowed nothing
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=writer["AccessKeyId"],
                     aws_secret_access_key=writer["SecretAccessKey"]).create_bucket(Bucket="guarded")
        yield {"endpoint_url": endpoint, "writer": (writer["AccessKeyId"], writer["SecretAccessKey"]),
               "nobody": (nobody["AccessKeyId"], nobody["SecretAccessKey"]), "bucket": "guarded"}
    finally:
        proc.terminate()
        proc.wait(10)


def s3_config(endpoint_url: str, key: str, secret: str, root: str) -> StorageConfig:
    return StorageConfig(root=root, endpoint_url=endpoint_url, region="us-east-1", access_key_id=key, secret_access_key=secret)


class Flaky:
    """An fsspec file system whose chosen methods raise a real transient error a number of times first.

    A flaky endpoint cannot be run here, so this stands in for one. With ``after=True`` the
    call is made first and its answer "lost" (the connection drops after the server acted).
    """

    def __init__(self, inner: Any, failures: int, methods: tuple[str, ...], *, error: BaseException | None = None, after: bool = False) -> None:
        self._inner, self.failures, self.methods, self.after = inner, failures, methods, after
        self.error = error or ConnectionResetError(104, "Connection reset by peer")
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self.methods:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.failures > 0:
                self.failures -= 1
                if self.after:
                    attr(*args, **kwargs)
                raise self.error
            return attr(*args, **kwargs)

        return call


class Counting:
    """An fsspec file system that counts calls per method."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call
