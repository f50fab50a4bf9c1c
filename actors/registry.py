"""RegistryActor: the running fabric's owner of the schema registry, wrapping :class:`~fabric_ray.governance.registry.SchemaRegistry`.

Callers (the HTTP face in ``serving.registry``, Python code) use one generic method,
``call(op, *args, **kwargs)``, which never raises across Ray: it answers ``("ok", result)`` or
``("error", http_status, confluent_error_body)``.
"""

from __future__ import annotations

from typing import Any

import ray

from fabric_ray.governance.registry import RegistryError, SchemaRegistry
from fabric_ray.governance.registry_store import SqlRegistryStore, sqlite_file

# SchemaRegistry methods that ``call`` may run; anything else is refused.
REGISTRY_OPS = frozenset({
    "register", "subjects", "versions", "get_version", "get_by_id", "lookup", "check", "referenced_by",
    "get_config", "get_config_body", "set_config", "update_config", "config", "delete_config", "delete_version",
    "delete_subject",
})
# Extra reads the actor answers itself from the store.
EXTRA_OPS = frozenset({"id_versions", "id_subjects", "ping"})


def registry_actor_name() -> str:
    """Actor name of the schema registry (one per fabric namespace)."""
    return "schema-registry"


@ray.remote(num_cpus=0)
class RegistryActor:
    """Schemas, subjects, versions and compatibility levels, persisted in the fabric's metadata store.

    Args:
        url: SQLAlchemy URL of the metadata store (``FabricConfig.metadata_url``); for a SQLite file
            its folder is created when missing. A new actor on the same URL sees everything.
    """

    def __init__(self, url: str) -> None:
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._store = SqlRegistryStore(url)
        self._registry = SchemaRegistry(self._store)

    def call(self, op: str, *args: Any, **kwargs: Any) -> tuple:
        """Run registry method ``op``; ``("ok", result)`` or ``("error", status, {"error_code", "message"})``."""
        try:
            if op in REGISTRY_OPS:
                return ("ok", getattr(self._registry, op)(*args, **kwargs))
            if op in EXTRA_OPS:
                return ("ok", getattr(self, f"_{op}")(*args, **kwargs))
            return ("error", 404, {"error_code": 404, "message": f"Unknown registry operation {op!r}"})
        except RegistryError as exc:
            return ("error", exc.status, exc.to_json())
        except RecursionError:
            return ("error", 422, {"error_code": 42201, "message": "Invalid schema: nested too deeply"})
        except (TypeError, ValueError) as exc:  # arguments of the wrong shape reaching the registry
            return ("error", 422, {"error_code": 422, "message": f"Invalid request: {type(exc).__name__}: {exc}"})
        except Exception as exc:  # noqa: BLE001 - nothing may cross Ray as an exception
            return ("error", 500, {"error_code": 50001, "message": f"Registry store error: {type(exc).__name__}: {exc}"})

    def _ping(self) -> str:
        return "pong"

    def _id_versions(self, schema_id: int) -> list[dict[str, Any]]:
        """``[{"subject", "version"}]`` of live versions using global id ``schema_id``; 404/40403 when unknown."""
        self._registry.get_by_id(schema_id)  # raises 40403 for an unknown id
        return [
            {"subject": row.subject, "version": row.version}
            for subject in self._store.subjects()
            for row in self._store.versions(subject)
            if row.schema_id == schema_id and not row.deleted
        ]

    def _id_subjects(self, schema_id: int) -> list[str]:
        """Subjects with a live version using global id ``schema_id``, sorted."""
        return sorted({v["subject"] for v in self._id_versions(schema_id)})

    def close(self) -> None:
        """Close the store's connections (the actor is usually just killed)."""
        self._store.close()
