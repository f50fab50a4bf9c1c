"""Open a storage URI as an fsspec file system plus a path inside it.

``file:///abs/path`` uses the local file system; ``s3://bucket/prefix`` uses s3fs with the
endpoint, region, credentials and addressing style of :class:`~fabric_ray.config.StorageConfig`
(so MinIO, Ceph, moto and AWS all work).

Example:
    >>> import tempfile
    >>> loc = open_location(f"file://{tempfile.mkdtemp()}")
    >>> loc.fs.pipe_file(loc.join("a", "b.txt"), b"hi")
    >>> loc.fs.cat_file(loc.join("a", "b.txt"))
    b'hi'
    >>> loc.child("a").uri.startswith("file://")
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fabric_ray.config import StorageConfig

__all__ = ["StorageLocation", "open_location"]


@dataclass(frozen=True)
class StorageLocation:
    """A folder on some file system.

    Attributes:
        fs: the fsspec file system.
        path: the folder's path on ``fs`` (no scheme; ``bucket/prefix`` on S3).
        scheme: ``file`` or ``s3``.
    """

    fs: Any
    path: str
    scheme: str

    @property
    def uri(self) -> str:
        """The folder as a URI (``file:///...`` or ``s3://...``)."""
        return f"{self.scheme}://{self.path}"

    def join(self, *parts: str) -> str:
        """Path on :attr:`fs` of ``parts`` under this folder."""
        return "/".join([self.path.rstrip("/"), *(p.strip("/") for p in parts)])

    def child(self, *parts: str) -> StorageLocation:
        """The sub-folder ``parts`` as a location."""
        return StorageLocation(self.fs, self.join(*parts), self.scheme)


def open_location(uri: str, storage: StorageConfig | None = None) -> StorageLocation:
    """Open ``uri`` (``file://`` or ``s3://``) with the S3 settings of ``storage``.

    Raises:
        ValueError: another scheme, naming the URI.
    """
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if not path.startswith("/"):
            raise ValueError(f"storage URI {uri!r}: file URIs need an absolute path (file:///abs/path)")
        return StorageLocation(LocalFileSystem(auto_mkdir=True), path.rstrip("/") or "/", "file")
    if uri.startswith("s3://"):
        s = storage or StorageConfig()
        client_kwargs: dict[str, Any] = {"region_name": s.region}
        if s.endpoint_url:
            client_kwargs["endpoint_url"] = s.endpoint_url
        kwargs: dict[str, Any] = {
            "client_kwargs": client_kwargs,
            "config_kwargs": {"s3": {"addressing_style": s.addressing_style}, "retries": {"max_attempts": 5, "mode": "standard"}},
            "skip_instance_cache": True,
        }
        if s.access_key_id:
            kwargs["key"] = s.access_key_id
            kwargs["secret"] = s.secret_access_key.get_secret_value() if s.secret_access_key else None
        fs = fsspec.filesystem("s3", **kwargs)
        return StorageLocation(fs, uri[len("s3://") :].rstrip("/"), "s3")
    raise ValueError(f"storage URI {uri!r}: use file:///abs/path or s3://bucket/prefix")
