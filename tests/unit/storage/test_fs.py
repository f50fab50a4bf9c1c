"""The storage layer on both kinds: whole-object writes, create-only writes, listings, errors, retries."""

from __future__ import annotations

import pickle
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fabric_ray.config import StorageConfig
from fabric_ray.loopback import free_port
from fabric_ray.storage.fs import PathNotFoundError, RetryPolicy, StorageError, StorageLocation, check_location, classify, open_location
from tests.unit.storage.conftest import FAST_RETRY, Flaky, s3_config


def test_bytes_round_trip_list_and_delete(loc):
    loc.write_bytes("a/b/c.bin", b"one")
    loc.write_bytes("a/d.bin", b"two")
    loc.write_bytes("a/d.bin", b"three")  # replaces
    loc.write_bytes("z.bin", b"")
    assert loc.read_bytes("a/d.bin") == b"three"
    assert loc.list() == ["a/b/c.bin", "a/d.bin", "z.bin"]
    assert loc.list("a") == ["b/c.bin", "d.bin"]
    assert loc.list("a", start_after="b/c.bin") == ["d.bin"]
    assert loc.list("missing") == []
    assert [f.size_bytes for f in loc.list_details("a")] == [3, 5]
    assert all(abs(f.modified_s - time.time()) < 300 for f in loc.list_details())
    assert loc.exists("a/d.bin") and not loc.exists("a/nope.bin")
    loc.delete(["a/d.bin", "a/never-was.bin"])
    assert loc.list() == ["a/b/c.bin", "z.bin"]
    with pytest.raises(PathNotFoundError) as err:
        loc.read_bytes("a/d.bin")
    assert loc.uri_of("a/d.bin") in str(err.value) and err.value.uri == loc.uri_of("a/d.bin") and not err.value.transient


def test_put_if_absent_creates_once(loc):
    assert loc.put_if_absent("log/0001.json", b"first") is True
    assert loc.put_if_absent("log/0001.json", b"second") is False
    assert loc.read_bytes("log/0001.json") == b"first"
    assert loc.list("log") == ["0001.json"]  # no temporary leftovers


def test_put_if_absent_race_has_one_winner(loc):
    wins: list[int] = []
    barrier = threading.Barrier(6)

    def racer(i: int) -> None:
        barrier.wait()
        if loc.put_if_absent("race.json", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert loc.read_bytes("race.json") == str(wins[0]).encode()


def test_location_pickles_and_children_keep_settings(loc):
    loc.write_bytes("x/y.bin", b"1")
    copy = pickle.loads(pickle.dumps(loc.child("x")))
    assert copy.uri == loc.uri + "/x" and copy.storage == loc.storage and copy.retry == loc.retry
    assert copy.read_bytes("y.bin") == b"1"


def test_arrow_filesystem_reads_what_fsspec_wrote(loc):
    table = pa.table({"a": [1, 2, 3]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    loc.write_bytes("t/a.parquet", sink.getvalue().to_pybytes())
    afs = loc.arrow_filesystem()
    assert pq.read_table(loc.join("t/a.parquet"), filesystem=afs).equals(table)
    if loc.scheme == "s3":
        assert type(afs).__name__ == "S3FileSystem" and afs.region == "us-east-1"


def test_check_location_accepts_a_good_root(loc):
    check_location(loc)  # nothing raised: the bucket exists, the keys work, the endpoint answers


def test_missing_bucket_fails_fast_naming_it(s3_endpoint):
    cfg = StorageConfig(root="s3://no-such-bucket/x", endpoint_url=s3_endpoint["endpoint_url"],
                        access_key_id="testing", secret_access_key="testing")
    loc = open_location(cfg.root, cfg)
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        check_location(loc)
    assert "bucket 'no-such-bucket' does not exist" in str(err.value) and err.value.uri == "s3://no-such-bucket/x"
    assert not err.value.transient
    with pytest.raises(StorageError) as err:
        loc.write_bytes("a.bin", b"1")  # an operation: permanent, not retried
    assert "bucket 'no-such-bucket' does not exist" in str(err.value) and "s3://no-such-bucket/x/a.bin" in str(err.value)
    assert time.monotonic() - started < 5  # no backoff on a permanent error


def test_unreachable_endpoint_fails_fast_and_retries_are_bounded():
    port = free_port()  # nothing listens there
    cfg = StorageConfig(root="s3://bucket/x", endpoint_url=f"http://127.0.0.1:{port}", access_key_id="k", secret_access_key="s")
    loc = open_location(cfg.root, cfg, retry=RetryPolicy(attempts=2, base_delay_s=0.001))
    with pytest.raises(StorageError) as err:
        check_location(loc)
    assert err.value.transient and f"127.0.0.1:{port}" in str(err.value) and "s3://bucket/x" in str(err.value)
    with pytest.raises(StorageError) as err:
        loc.read_bytes("a.bin")
    assert err.value.transient and "after 2 attempt(s)" in str(err.value)


def test_wrong_credentials_are_named(auth_s3):
    """moto checks keys only when started with INITIAL_NO_AUTH_ACTION_COUNT: the auth_s3 fixture does."""
    ep, bucket = auth_s3["endpoint_url"], auth_s3["bucket"]
    key, secret = auth_s3["writer"]
    good = open_location(f"s3://{bucket}/p", s3_config(ep, key, secret, f"s3://{bucket}/p"))
    check_location(good)
    good.write_bytes("ok.bin", b"1")
    cases = {
        "unknown key": (s3_config(ep, "AKIAUNKNOWNUNKNOWN01", "x", f"s3://{bucket}/p"), "InvalidAccessKeyId"),
        "wrong secret": (s3_config(ep, key, "not-the-secret", f"s3://{bucket}/p"), "SignatureDoesNotMatch"),
    }
    for label, (cfg, code) in cases.items():
        loc = open_location(cfg.root, cfg, retry=FAST_RETRY)
        for call in (lambda: check_location(loc), lambda: loc.read_bytes("ok.bin"), lambda: loc.list()):
            with pytest.raises(StorageError) as err:
                call()
            text = str(err.value)
            assert "credentials were rejected" in text and f"s3://{bucket}/p" in text and "access_key_id" in text, (label, text)
            assert code in text and not err.value.transient, (label, text)
    denied = open_location(f"s3://{bucket}/p", s3_config(ep, *auth_s3["nobody"], f"s3://{bucket}/p"))
    with pytest.raises(StorageError) as err:
        check_location(denied)
    assert "access denied" in str(err.value) and "AccessDenied" in str(err.value)


def _flaky(loc: StorageLocation, failures: int, methods: tuple[str, ...], **kw) -> tuple[StorageLocation, Flaky]:
    fs = Flaky(loc.fs, failures, methods, **kw)
    return StorageLocation(fs, loc.path, loc.scheme, loc.storage, FAST_RETRY), fs


def test_transient_errors_are_retried(loc):
    flaky, fs = _flaky(loc, 2, ("cat_file", "pipe_file", "call_s3", "find"))
    flaky.write_bytes("a.bin", b"payload")
    assert fs.failures == 0 and flaky.read_bytes("a.bin") == b"payload"
    fs.failures = 2
    assert flaky.list() == ["a.bin"]
    fs.failures = 2
    assert flaky.read_bytes("a.bin") == b"payload"
    assert fs.calls["cat_file"] == 4  # 1 + (2 failures + 1 success)


def test_retries_give_up_after_the_policy(loc):
    flaky, fs = _flaky(loc, 10, ("cat_file",))
    loc.write_bytes("a.bin", b"1")
    with pytest.raises(StorageError) as err:
        flaky.read_bytes("a.bin")
    assert err.value.transient and fs.calls["cat_file"] == FAST_RETRY.attempts
    assert loc.uri_of("a.bin") in str(err.value)


def test_permanent_errors_are_not_retried(loc):
    flaky, fs = _flaky(loc, 10, ("cat_file",), error=PermissionError("AccessDenied"))
    with pytest.raises(StorageError) as err:
        flaky.read_bytes("a.bin")
    assert fs.calls["cat_file"] == 1 and "access denied" in str(err.value) and not err.value.transient


def test_put_if_absent_recognises_its_own_lost_answer(loc):
    """The first create succeeds but its answer is lost; the retry finds the object and knows it is its own."""
    flaky, fs = _flaky(loc, 1, ("pipe_file", "link"), after=True)
    assert flaky.put_if_absent("entry.json", b"commit-abc") is True
    assert loc.read_bytes("entry.json") == b"commit-abc"
    flaky2, _ = _flaky(loc, 1, ("pipe_file", "link"), after=True)
    assert flaky2.put_if_absent("entry.json", b"commit-xyz") is False  # someone else's object


def test_s3_error_codes_are_classified():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(code: str | None, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"} if code else {}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    slow = OSError(16, "Please reduce your request rate")  # what s3fs raises, with the ClientError as cause
    slow.__cause__ = client_error("SlowDown", 503)
    assert classify(slow) == "transient"
    assert classify(client_error(None, 500)) == "transient" and classify(client_error("InternalError", 500)) == "transient"
    assert classify(EndpointConnectionError(endpoint_url="http://x")) == "transient"
    assert classify(client_error("NoSuchBucket", 404)) == "no_bucket"
    assert classify(client_error("InvalidAccessKeyId", 403)) == "credentials"
    assert classify(client_error("SignatureDoesNotMatch", 403)) == "credentials"
    assert classify(client_error("AccessDenied", 403)) == "denied"
    assert classify(client_error("NoSuchKey", 404)) == "missing"


def test_classify_and_bad_uris():
    assert classify(TimeoutError()) == "transient" and classify(FileExistsError()) == "exists"
    assert classify(ValueError("a bug")) is None
    with pytest.raises(ValueError, match="absolute"):
        open_location("file://relative/path")
    with pytest.raises(ValueError, match="gs://x"):
        open_location("gs://x")
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
