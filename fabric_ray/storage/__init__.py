"""Object storage: one URI-driven layer over fsspec (``file://`` and ``s3://``)."""

from fabric_ray.storage.fs import StorageLocation, open_location

__all__ = ["StorageLocation", "open_location"]
