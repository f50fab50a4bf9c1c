"""Object storage: one URI-driven layer over fsspec for ``file://`` and ``s3://``.

:func:`open_location` turns a URI into a :class:`StorageLocation`: an fsspec file system plus a
folder on it. ``s3://`` uses s3fs with the endpoint, region, credentials and addressing style of
:class:`~fabric_ray.config.StorageConfig`, so MinIO, Ceph, moto and AWS all work.

The location's own methods (:meth:`~StorageLocation.read_bytes`, ``write_bytes``,
``put_if_absent``, ``exists``, ``list``, ``delete``) are what the storage layer builds on:

* every call is retried on *transient* errors (throttling, 5xx, connection refused or reset,
  timeouts) with exponential backoff and a bounded number of attempts (:class:`RetryPolicy`);
* *permanent* errors (no such bucket, unknown access key, wrong secret, access denied, a missing
  path) raise :class:`StorageError` at once, naming the URI and saying what to do;
* writes are whole-object: S3 makes an object visible only when its PUT completes; locally a
  write goes to a temporary name and is renamed (or hard-linked, for ``put_if_absent``);
* ``put_if_absent`` is a create-only write (S3 ``If-None-Match: *``, locally ``link(2)``): of
  several writers of one name exactly one wins. This is the commit step of datasets.
* listings on S3 go straight to ``ListObjectsV2`` (strongly consistent), never to s3fs's cache.

The raw ``fs`` stays available for code that streams (Parquet writers, archive files);
:meth:`StorageLocation.arrow_filesystem` gives the matching pyarrow file system, configured
from the same settings, so pyarrow never resolves AWS hosts by itself.

Example:
    >>> import tempfile
    >>> loc = open_location(f"file://{tempfile.mkdtemp()}")
    >>> loc.write_bytes("a/b.txt", b"hi")
    >>> loc.read_bytes("a/b.txt"), loc.put_if_absent("a/b.txt", b"other"), loc.list()
    (b'hi', False, ['a/b.txt'])
    >>> loc.child("a").uri.startswith("file://"), loc.child("a").list()
    (True, ['b.txt'])
    >>> check_location(loc)
"""

from __future__ import annotations

import builtins
import errno
import functools
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fabric_ray.config import StorageConfig

__all__ = [
    "FileInfo",
    "PathNotFoundError",
    "RetryPolicy",
    "StorageError",
    "StorageLocation",
    "check_location",
    "classify",
    "open_location",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_S3_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
# botocore's own attempts per call (its "standard" mode backs off up to 20 s between them). Kept
# low because RetryPolicy retries on top of it and attempts multiply; the raw ``fs`` (archive,
# checkpoints) keeps this much resilience on its own.
_BOTO_ATTEMPTS = 2
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException", "InternalError",
     "ServiceUnavailable", "OperationAborted", "500", "502", "503", "504"}
)
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "InvalidSecurity"})
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EIO, getattr(errno, "EREMOTEIO", errno.EIO), errno.EAGAIN, errno.ETIMEDOUT})
_KEYS_HINT = "check storage.access_key_id / storage.secret_access_key (FABRIC_STORAGE__ACCESS_KEY_ID, FABRIC_STORAGE__SECRET_ACCESS_KEY)"


class StorageError(RuntimeError):
    """A storage call failed; the message names the URI and says what to do.

    Attributes:
        uri: the object or folder the call was about.
        transient: ``True`` when retrying later may succeed (the endpoint was unreachable or
            kept throttling through every attempt); ``False`` for errors a retry cannot fix.
    """

    def __init__(self, message: str, *, uri: str, transient: bool = False) -> None:
        super().__init__(message)
        self.uri = uri
        self.transient = transient


class PathNotFoundError(StorageError):
    """The object or folder does not exist."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient storage errors.

    The delay before retry ``n`` (1-based) is ``min(max_delay_s, base_delay_s * 2 ** (n - 1))``
    times a random factor in ``[0.5, 1]`` (jitter, so that contending clients spread out).

    Attributes:
        attempts: calls in all, the first included (1 disables retrying).
        base_delay_s: delay before the first retry.
        max_delay_s: upper bound of one delay.
    """

    attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy: attempts must be >= 1; got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"RetryPolicy: delays must be >= 0; got {self.base_delay_s}, {self.max_delay_s}")

    def delay_s(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class FileInfo:
    """One file of a listing: its name relative to the listed folder, size and modification time."""

    name: str
    size_bytes: int
    modified_s: float


def _s3_error(exc: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status found anywhere on ``exc``'s cause chain."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            err = response.get("Error", {}) or {}
            status = (response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
            return (str(err["Code"]) if err.get("Code") else None), status
        cur = cur.__cause__ or cur.__context__
    return None, None


def _is_connection_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        BotoConnectionError = HTTPClientError = ()  # type: ignore[assignment,misc]
    return isinstance(exc, (ConnectionError, TimeoutError, BotoConnectionError, HTTPClientError)) or type(exc).__name__ in {
        "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError", "FSTimeoutError"
    }


def classify(exc: BaseException) -> str | None:
    """What kind of storage failure ``exc`` is.

    Returns:
        ``"transient"`` (retry), ``"no_bucket"``, ``"credentials"``, ``"denied"``, ``"missing"``
        (no such object or folder), ``"exists"`` (a create-only write lost), ``"permanent"``
        (another storage error) or ``None`` (not a storage error: a bug, let it through).

    Example:
        >>> classify(ConnectionResetError()), classify(FileNotFoundError("x")), classify(KeyError("k"))
        ('transient', 'missing', None)
    """
    code, status = _s3_error(exc)
    if code == "NoSuchBucket":
        return "no_bucket"
    if code in _CREDENTIAL_CODES:
        return "credentials"
    if code in _DENIED_CODES:
        return "denied"
    if code in _TRANSIENT_CODES or (status is not None and status >= 500):
        return "transient"
    if code in {"NoSuchKey", "404"}:
        return "missing"
    if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}:
        return "credentials"
    if isinstance(exc, FileExistsError):
        return "exists"
    if isinstance(exc, FileNotFoundError):
        return "no_bucket" if "bucket does not exist" in str(exc) else "missing"
    if isinstance(exc, PermissionError):
        return "denied"
    if _is_connection_error(exc):
        return "transient"
    if isinstance(exc, OSError):
        return "transient" if exc.errno in _TRANSIENT_ERRNOS else "permanent"
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # pragma: no cover
        return None
    return "permanent" if isinstance(exc, BotoCoreError) else None


def _storage_error(kind: str, exc: BaseException, uri: str, op: str, storage: StorageConfig | None, attempts: int = 1) -> StorageError:
    endpoint = (storage.endpoint_url if storage else None) or "the default AWS endpoint"
    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    code, _ = _s3_error(exc)
    detail = f"{type(exc).__name__}{f' {code}' if code else ''}: {exc}"
    if kind == "no_bucket":
        return StorageError(f"{op} {uri}: bucket {bucket!r} does not exist at {endpoint}; create it or fix storage.root ({detail})", uri=uri)
    if kind == "credentials":
        return StorageError(f"{op} {uri}: the credentials were rejected by {endpoint}; {_KEYS_HINT} ({detail})", uri=uri)
    if kind == "denied" and code in (None, "403"):  # a bare 403 (answers to HEAD carry no code): either cause
        return StorageError(
            f"{op} {uri}: access denied by {endpoint}: the credentials were rejected or lack permission on {bucket!r}; {_KEYS_HINT} ({detail})",
            uri=uri,
        )
    if kind == "denied":
        return StorageError(
            f"{op} {uri}: access denied; grant these credentials list/get/put/delete on {bucket!r} or {_KEYS_HINT} ({detail})", uri=uri
        )
    if kind == "missing":
        return PathNotFoundError(f"{op} {uri}: no such file or folder; check the path ({detail})", uri=uri)
    if kind == "transient":
        return StorageError(
            f"{op} {uri}: still failing after {attempts} attempt(s); is {endpoint} up and reachable (storage.endpoint_url)? ({detail})",
            uri=uri,
            transient=True,
        )
    return StorageError(f"{op} {uri}: {detail}", uri=uri)


@dataclass(frozen=True)
class StorageLocation:
    """A folder on some file system; picklable, so Ray workers can receive it.

    Attributes:
        fs: the fsspec file system.
        path: the folder's path on ``fs`` (no scheme; ``bucket/prefix`` on S3).
        scheme: ``file`` or ``s3``.
        storage: the settings it was opened with (``None``: defaults); used by
            :meth:`arrow_filesystem` and :func:`check_location`.
        retry: the backoff for transient errors.
    """

    fs: Any
    path: str
    scheme: str
    storage: StorageConfig | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def uri(self) -> str:
        """The folder as a URI (``file:///...`` or ``s3://...``)."""
        return f"{self.scheme}://{self.path}"

    def join(self, *parts: str) -> str:
        """Path on :attr:`fs` of ``parts`` under this folder."""
        return "/".join([self.path.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))])

    def child(self, *parts: str) -> StorageLocation:
        """The sub-folder ``parts`` as a location."""
        return replace(self, path=self.join(*parts))

    def uri_of(self, rel: str) -> str:
        """The URI of ``rel`` under this folder (for messages)."""
        return f"{self.scheme}://{self.join(rel)}"

    # -- pyarrow ------------------------------------------------------------------------------

    def arrow_filesystem(self) -> Any:
        """The pyarrow file system for this location's paths (those from :meth:`join`).

        ``file``: ``pyarrow.fs.LocalFileSystem``. ``s3``: pyarrow's native ``S3FileSystem`` with
        the endpoint (``endpoint_override`` and ``scheme``), region, credentials and addressing
        style of :attr:`storage` (or of the s3fs instance when there is none), never AWS's
        defaults for an endpoint the config names.
        """
        if self.scheme == "file":
            import pyarrow.fs as pafs

            return pafs.LocalFileSystem()
        s = self.storage
        if s is not None:
            key = s.access_key_id
            secret = s.secret_access_key.get_secret_value() if s.secret_access_key else None
            return _arrow_s3(s.endpoint_url, s.region, key, secret, s.addressing_style)
        kw = getattr(self.fs, "client_kwargs", {}) or {}
        style = ((getattr(self.fs, "config_kwargs", {}) or {}).get("s3") or {}).get("addressing_style", "path")
        return _arrow_s3(kw.get("endpoint_url"), kw.get("region_name") or "us-east-1", getattr(self.fs, "key", None),
                         getattr(self.fs, "secret", None), style)

    # -- retried operations ---------------------------------------------------------------------

    def _call(self, op: str, rel: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with retries; translate failures into :class:`StorageError`."""
        uri = self.uri_of(rel)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return fn()
            except StorageError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; non-storage errors re-raised
                kind = classify(exc)
                if kind is None or kind == "exists":
                    raise
                if kind == "transient" and attempt < self.retry.attempts:
                    delay = self.retry.delay_s(attempt)
                    log.warning("%s %s: transient error (attempt %d/%d), retrying in %.2fs: %r", op, uri, attempt, self.retry.attempts, delay, exc)
                    time.sleep(delay)
                    continue
                raise _storage_error(kind, exc, uri, op, self.storage, attempt) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def read_bytes(self, rel: str) -> bytes:
        """The whole object ``rel``.

        Raises:
            PathNotFoundError: there is none.
            StorageError: any other failure (after retries where transient).
        """
        if self.scheme == "s3":  # one GET (s3fs would HEAD first for large-object splitting, hiding error codes)
            return self._call("read", rel, lambda: self.fs.cat_file(self.join(rel), max_concurrency=1))
        return self._call("read", rel, lambda: self.fs.cat_file(self.join(rel)))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel``, replacing it; readers see the old or the new object, whole."""
        path = self.join(rel)
        if self.scheme == "file":

            def put() -> None:
                tmp = _tmp_name(path)
                try:
                    self.fs.pipe_file(tmp, data)
                    self.fs.mv(tmp, path)
                finally:
                    _quiet_rm(self.fs, tmp)

            self._call("write", rel, put)
        else:
            self._call("write", rel, lambda: self.fs.pipe_file(path, data))

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` unless it exists: the atomic create-only step.

        S3: a conditional PUT (``If-None-Match: *``, honoured by AWS since 2024, MinIO and moto).
        Local: the data goes to a temporary file that is hard-linked to ``rel`` (``link(2)`` fails
        when the name exists), so the file appears whole or not at all.

        A retry after a transient error may find the object created by its own earlier attempt
        (the first PUT succeeded but its answer was lost); it then compares the bytes and returns
        ``True`` when they are ``data``. Callers make ``data`` unique (a commit id) so that
        equality means "mine".

        Returns:
            ``True`` if this call created the object, ``False`` if it already existed.
        """
        path = self.join(rel)
        tries = {"n": 0}

        def create() -> bool:
            tries["n"] += 1
            try:
                if self.scheme == "file":
                    tmp = _tmp_name(path)
                    try:
                        self.fs.pipe_file(tmp, data)
                        self.fs.link(tmp, path)
                    finally:
                        _quiet_rm(self.fs, tmp)
                else:
                    self.fs.pipe_file(path, data, mode="create")
                return True
            except FileExistsError:
                if tries["n"] > 1 and self.fs.cat_file(path) == data:
                    return True
                return False
            except OSError as exc:  # moto and some S3 builds answer 412 without the If-None-Match condition
                if _s3_error(exc)[0] == "PreconditionFailed" or _s3_error(exc)[1] == 412:
                    return tries["n"] > 1 and self.fs.cat_file(path) == data
                raise

        return self._call("create", rel, create)

    def exists(self, rel: str = "") -> bool:
        """Whether the object ``rel`` (or, locally, a file or folder) exists."""
        path = self.join(rel)
        if self.scheme == "s3":
            bucket, key = _split_s3(path)

            def head() -> bool:
                try:
                    self.fs.call_s3("head_object", Bucket=bucket, Key=key)
                    return True
                except FileNotFoundError:
                    return False

            return self._call("exists", rel, head)
        return self._call("exists", rel, lambda: self.fs.exists(path))

    def list(self, rel: str = "", *, start_after: str | None = None) -> builtins.list[str]:
        """Names of the files under ``rel`` (recursive), relative to ``rel``, sorted.

        Args:
            rel: the folder to list; a missing folder lists as empty.
            start_after: only names sorting after this one (S3 ``StartAfter``: the listing
                starts there instead of at the beginning).
        """
        return [f.name for f in self.list_details(rel, start_after=start_after)]

    def list_details(self, rel: str = "", *, start_after: str | None = None) -> builtins.list[FileInfo]:
        """Like :meth:`list`, with each file's size and modification time."""
        folder = self.join(rel)
        if self.scheme == "s3":
            return self._call("list", rel, lambda: _s3_list(self.fs, folder, start_after))

        def local() -> builtins.list[FileInfo]:
            try:
                found = self.fs.find(folder, detail=True)
            except FileNotFoundError:
                return []
            out = []
            for path, info in found.items():
                name = path[len(folder.rstrip("/")) + 1 :] if path.startswith(folder.rstrip("/") + "/") else path.rsplit("/", 1)[-1]
                if info.get("type") == "directory":
                    continue
                if start_after is None or name > start_after:
                    out.append(FileInfo(name, int(info.get("size") or 0), float(info.get("mtime") or 0.0)))
            return sorted(out, key=lambda f: f.name)

        return self._call("list", rel, local)

    def delete(self, rels: Iterable[str]) -> None:
        """Delete the objects ``rels``; missing ones are ignored."""
        rels = list(rels)
        paths = [self.join(r) for r in rels]
        if not paths:
            return
        if self.scheme == "s3":
            bucket = _split_s3(paths[0])[0]
            for i in range(0, len(paths), _S3_DELETE_BATCH):
                batch = [{"Key": _split_s3(p)[1]} for p in paths[i : i + _S3_DELETE_BATCH]]
                self._call("delete", "", functools.partial(self.fs.call_s3, "delete_objects", Bucket=bucket, Delete={"Objects": batch, "Quiet": True}))
            return
        for rel, path in zip(rels, paths):
            self._call("delete", rel, functools.partial(_quiet_rm, self.fs, path, strict=True))


def _tmp_name(path: str) -> str:
    folder, _, base = path.rpartition("/")
    return f"{folder}/.tmp-{uuid.uuid4().hex}-{base}"


def _quiet_rm(fs: Any, path: str, strict: bool = False) -> None:
    """Remove ``path``; a missing file is fine (``strict``: other errors propagate)."""
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    except OSError:
        if strict:
            raise


def _split_s3(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


def _s3_list(fs: Any, folder: str, start_after: str | None) -> list[FileInfo]:
    bucket, prefix = _split_s3(folder.rstrip("/"))
    prefix = f"{prefix}/" if prefix else ""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = prefix + start_after
    out: list[FileInfo] = []
    while True:
        page = fs.call_s3("list_objects_v2", **kwargs)
        for obj in page.get("Contents", []) or []:
            name = obj["Key"][len(prefix) :]
            if name and not name.endswith("/"):
                out.append(FileInfo(name, int(obj.get("Size", 0)), obj["LastModified"].timestamp()))
        if not page.get("IsTruncated"):
            return out
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


@functools.lru_cache(maxsize=32)
def _arrow_s3(endpoint_url: str | None, region: str, key: str | None, secret: str | None, addressing_style: str) -> Any:
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {
        "region": region,
        "force_virtual_addressing": addressing_style == "virtual",
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
        "connect_timeout": 10,
        "request_timeout": 60,
    }
    if endpoint_url:
        scheme, _, host = endpoint_url.partition("://")
        kwargs["endpoint_override"] = host.rstrip("/") if host else endpoint_url
        kwargs["scheme"] = scheme if host else "https"
    if key:
        kwargs["access_key"] = key
        kwargs["secret_key"] = secret or ""
    return pafs.S3FileSystem(**kwargs)


def _s3fs(s: StorageConfig, *, max_attempts: int = _BOTO_ATTEMPTS, timeout_s: float | None = None) -> Any:
    client_kwargs: dict[str, Any] = {"region_name": s.region}
    if s.endpoint_url:
        client_kwargs["endpoint_url"] = s.endpoint_url
    config_kwargs: dict[str, Any] = {"s3": {"addressing_style": s.addressing_style}, "retries": {"max_attempts": max_attempts, "mode": "standard"}}
    if timeout_s is not None:
        config_kwargs.update(connect_timeout=timeout_s, read_timeout=timeout_s)
    kwargs: dict[str, Any] = {"client_kwargs": client_kwargs, "config_kwargs": config_kwargs, "skip_instance_cache": True}
    if s.access_key_id:
        kwargs["key"] = s.access_key_id
        kwargs["secret"] = s.secret_access_key.get_secret_value() if s.secret_access_key else None
    return fsspec.filesystem("s3", **kwargs)


def open_location(uri: str, storage: StorageConfig | None = None, *, retry: RetryPolicy | None = None) -> StorageLocation:
    """Open ``uri`` (``file://`` or ``s3://``) with the S3 settings of ``storage``.

    Nothing is contacted: use :func:`check_location` to fail fast on a bad setup.

    Args:
        uri: ``file:///abs/path`` or ``s3://bucket/prefix``.
        storage: endpoint, region, credentials and addressing style for ``s3://``.
        retry: backoff for transient errors (default :class:`RetryPolicy`).

    Raises:
        ValueError: another scheme or a relative file path, naming the URI.
    """
    policy = retry or RetryPolicy()
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if not path.startswith("/"):
            raise ValueError(f"storage URI {uri!r}: file URIs need an absolute path (file:///abs/path)")
        return StorageLocation(LocalFileSystem(auto_mkdir=True), path.rstrip("/") or "/", "file", storage, policy)
    if uri.startswith("s3://"):
        path = uri[len("s3://") :].rstrip("/")
        if not path:
            raise ValueError(f"storage URI {uri!r}: name a bucket (s3://bucket/prefix)")
        s = storage or StorageConfig()
        return StorageLocation(_s3fs(s), path, "s3", s, policy)
    raise ValueError(f"storage URI {uri!r}: use file:///abs/path or s3://bucket/prefix")


def check_location(loc: StorageLocation, *, timeout_s: float = 5.0) -> None:
    """Fail fast when ``loc`` cannot be used: one cheap request, no retries.

    ``s3``: lists at most one key under the prefix, which needs the bucket to exist, the
    credentials to be valid and the endpoint to answer within ``timeout_s``. ``file``: creates
    the folder if needed and checks that it is writable.

    Raises:
        StorageError: naming the URI and the fix (missing bucket, rejected credentials, access
            denied, unreachable endpoint (``transient=True``), unwritable folder).
    """
    if loc.scheme == "file":
        try:
            os.makedirs(loc.path, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"check {loc.uri}: cannot create the folder: {exc}; pick another storage.root", uri=loc.uri) from exc
        if not os.path.isdir(loc.path) or not os.access(loc.path, os.W_OK | os.X_OK):
            raise StorageError(f"check {loc.uri}: not a writable folder; fix its permissions or pick another storage.root", uri=loc.uri)
        return
    probe = _s3fs(loc.storage, max_attempts=1, timeout_s=timeout_s) if loc.storage is not None else loc.fs
    bucket, prefix = _split_s3(loc.path)
    try:
        probe.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - classified
        kind = classify(exc)
        if kind is None:
            raise
        if kind == "missing":  # a 404 on a bucket-level call: the bucket
            kind = "no_bucket"
        if kind == "transient":
            endpoint = (loc.storage.endpoint_url if loc.storage else None) or "the default AWS endpoint"
            raise StorageError(
                f"check {loc.uri}: cannot reach {endpoint} within {timeout_s:g}s; is it running, and is storage.endpoint_url right? ({type(exc).__name__}: {exc})",
                uri=loc.uri,
                transient=True,
            ) from exc
        raise _storage_error(kind, exc, loc.uri, "check", loc.storage) from exc
