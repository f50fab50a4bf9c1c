"""SchemaRegistryServer: the Confluent Schema Registry REST API over the fabric's RegistryActor, on Ray Serve.

Confluent clients (``confluent_kafka.schema_registry.SchemaRegistryClient``, the Avro/JSON
serializers, Kafka Connect, ksqlDB) work against it unchanged; point them at
``http://host:port<route_prefix>``. Routes:

    GET    /subjects[?deleted=true]
    GET    /subjects/{subject}/versions[?deleted=true]
    POST   /subjects/{subject}/versions[?normalize=true&force=true]  {"schema", "schemaType"?, "references"?, "version"?}
                                                   -> {"id"} (references: [{"name", "subject", "version"}];
                                                   version: Confluent's compare-and-set, the next version or 422)
    POST   /subjects/{subject}[?normalize=true&deleted=true]
                                                   lookup -> {"subject", "id", "version", "schema"[, "schemaType"]}
    GET    /subjects/{subject}/versions/{version|latest}[/schema][?format=resolved|serialized]
                                                   (resolved: Avro references written in full;
                                                   serialized: Protobuf as a base64 descriptor)
    GET    /subjects/{subject}/versions/{version|latest}/referencedby -> [ids of schemas referencing it]
    DELETE /subjects/{subject}[?permanent=true]    -> [versions]
    DELETE /subjects/{subject}/versions/{version}[?permanent=true] -> version
    GET    /schemas/ids/{id}[?format=...]          -> {"schema"[, "schemaType"][, "references"]}
    GET    /schemas/ids/{id}/schema | /versions | /subjects,  GET /schemas/types
    POST   /compatibility/subjects/{subject}/versions[?verbose=true&normalize=true]
                                                   -> {"is_compatible"[, "messages"]}: as register would check,
                                                   every version under a transitive level, else the latest
    POST   /compatibility/subjects/{subject}/versions/{version|latest}[?verbose=true&normalize=true]
                                                   against that one version only (Confluent), any level
    GET    /config                                 -> {"compatibilityLevel"[, "normalize", "validateNewSchemas"]}
    GET    /config/{subject}[?defaultToGlobal=true] -> the same; 404/40408 when the subject has
                                                   nothing of its own (unless defaultToGlobal)
    PUT    /config[/{subject}]                     {"compatibility"?, "normalize"?, "validateNewSchemas"?}
                                                   -> the fields set, as Confluent echoes them
    DELETE /config/{subject}                       -> {"compatibilityLevel"} (the dropped level)

Responses are ``application/vnd.schemaregistry.v1+json``; errors are Confluent bodies
``{"error_code", "message"}``. Deploy with ``serve run serving.registry:build_app namespace=fabric``.

No ``from __future__ import annotations`` here: FastAPI must see the real ``Request`` type.
"""


import asyncio
import json
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.registry import registry_actor_name
from fabric_ray.governance.formats import schema_types

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_BODY_TYPES = ("application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json",
                       "application/json", "application/octet-stream")
MAX_BODY_BYTES = 8 * 1024 * 1024
CALL_TIMEOUT_S = 30.0


class RegistryResponse(JSONResponse):
    """JSON with Confluent's content type."""

    media_type = CONTENT_TYPE


api = FastAPI(title="fabric_ray schema registry", description="Confluent Schema Registry REST API",
              default_response_class=RegistryResponse)


class _Refused(Exception):
    """A request answered with a Confluent error body."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message

    def response(self) -> RegistryResponse:
        return _error(self.status, self.error_code, self.message)


def _error(status: int, error_code: int, message: str) -> RegistryResponse:
    return RegistryResponse(status_code=status, content={"error_code": error_code, "message": message})


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> RegistryResponse:
    return _error(exc.status_code, exc.status_code, f"HTTP {exc.status_code}: {exc.detail}")


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> RegistryResponse:
    return _error(422, 422, f"Invalid request: {exc.errors()}")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").strip().lower() == "true"


def _format(request: Request) -> "dict[str, str]":
    """``{"format": ...}`` when the query asks for one (``serialized``: Protobuf as a base64 descriptor)."""
    fmt = request.query_params.get("format")
    return {"format": fmt} if fmt else {}


def _schema_id(raw: str) -> int:
    text = raw.strip()
    if not text.isdigit():
        raise _Refused(404, 40403, f"Schema {raw!r} not found")
    return int(text)


async def _json_body(request: Request) -> Any:
    """The request's JSON body; 415 for other content types, 400 (Confluent's answer) when malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in ACCEPTED_BODY_TYPES:
        raise _Refused(415, 415, f"Unsupported content type {ctype!r}; send {CONTENT_TYPE} or application/json")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise _Refused(413, 413, f"Request body is {len(raw)} bytes; at most {MAX_BODY_BYTES}")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Refused(400, 400, f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _Refused(400, 400, "Request body is not valid JSON: nested too deeply") from None


async def _schema_body(request: Request) -> "tuple[str, str, list]":
    """``(schema, schemaType, references)`` of a register/lookup/compatibility body, type-checked."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise _Refused(422, 42201, f"Request body must be a JSON object with a 'schema'; got {type(body).__name__}")
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise _Refused(422, 42201, "Invalid schema: 'schema' must be a non-empty string")
    schema_type = body.get("schemaType") or "AVRO"
    if not isinstance(schema_type, str):
        raise _Refused(422, 42201, f"Invalid schema type {schema_type!r}")
    references = body.get("references") or []
    if not isinstance(references, list):
        raise _Refused(422, 42201, f"'references' must be a list; got {type(references).__name__}")
    return schema, schema_type, references


def _body_version(body: Any) -> "int | None":
    """The ``version`` of a register body (Confluent's compare-and-set), or None; 422/42201 when malformed."""
    version = body.get("version") if isinstance(body, dict) else None
    if version is None:
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Refused(422, 42201, f"Invalid schema: 'version' must be an integer; got {version!r}")
    return version


def _schema_view(d: "dict[str, Any]", *keys: str) -> "dict[str, Any]":
    """``d`` restricted to ``keys``, with ``schemaType`` only when not AVRO (as Confluent answers)."""
    out = {k: d[k] for k in keys if k in d}
    if d.get("schemaType", "AVRO") != "AVRO":
        out["schemaType"] = d["schemaType"]
    return out


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class SchemaRegistryServer:
    """Answers the Confluent Schema Registry REST API from the fabric's ``RegistryActor``.

    Args:
        namespace: Ray namespace of the ``RegistryActor`` (named ``schema-registry``).
    """

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._actor: Any = None

    async def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``op`` on the registry actor; raise :class:`_Refused` with its Confluent error."""
        try:
            if self._actor is None:
                self._actor = ray.get_actor(registry_actor_name(), namespace=self._namespace)
            reply = await asyncio.wait_for(self._actor.call.remote(op, *args, **kwargs), CALL_TIMEOUT_S)
        except (ValueError, ray.exceptions.RayError, asyncio.TimeoutError) as exc:
            self._actor = None  # look it up again next time
            raise _Refused(503, 50003, f"Schema registry unavailable ({type(exc).__name__}); is the fabric up?") from None
        if reply[0] == "ok":
            return reply[1]
        _, status, body = reply
        raise _Refused(status, body.get("error_code", status), body.get("message", ""))

    async def _answer(self, work: Any) -> Response:
        try:
            result = await work
        except _Refused as exc:
            return exc.response()
        return result if isinstance(result, Response) else RegistryResponse(result)

    # -- subjects -------------------------------------------------------------------------------

    @api.get("/subjects")
    async def list_subjects(self, request: Request) -> Response:
        return await self._answer(self._call("subjects", include_deleted=_flag(request, "deleted")))

    @api.get("/subjects/{subject:path}/versions")
    async def list_versions(self, subject: str, request: Request) -> Response:
        return await self._answer(self._call("versions", subject, include_deleted=_flag(request, "deleted")))

    @api.post("/subjects/{subject:path}/versions")
    async def register(self, subject: str, request: Request) -> Response:
        async def work() -> Any:
            schema, schema_type, references = await _schema_body(request)
            version = _body_version(await _json_body(request))
            schema_id = await self._call(
                "register", subject, schema, schema_type, references, normalize=_flag(request, "normalize"),
                version=version, force=_flag(request, "force"),
            )
            return {"id": schema_id}
        return await self._answer(work())

    @api.post("/subjects/{subject:path}")
    async def lookup(self, subject: str, request: Request) -> Response:
        async def work() -> Any:
            schema, schema_type, references = await _schema_body(request)
            found = await self._call(
                "lookup", subject, schema, schema_type, references, normalize=_flag(request, "normalize"),
                include_deleted=_flag(request, "deleted"),
            )
            return _schema_view(found, "subject", "id", "version", "schema", "references")
        return await self._answer(work())

    @api.get("/subjects/{subject:path}/versions/{version}")
    async def get_version(self, subject: str, version: str, request: Request) -> Response:
        async def work() -> Any:
            got = await self._call(
                "get_version", subject, version, include_deleted=_flag(request, "deleted"), **_format(request)
            )
            return _schema_view(got, "subject", "version", "id", "schema", "references")
        return await self._answer(work())

    @api.get("/subjects/{subject:path}/versions/{version}/schema")
    async def get_version_schema(self, subject: str, version: str, request: Request) -> Response:
        async def work() -> Any:
            got = await self._call("get_version", subject, version, include_deleted=_flag(request, "deleted"))
            return Response(content=got["schema"], media_type=CONTENT_TYPE)
        return await self._answer(work())

    @api.get("/subjects/{subject:path}/versions/{version}/referencedby")
    async def referenced_by(self, subject: str, version: str) -> Response:
        return await self._answer(self._call("referenced_by", subject, version))

    # Subjects may hold "/" (the Protobuf serializer names an import's subject after its file,
    # e.g. "shop/money.proto", sent as %2F): every route takes the subject as a path, and a
    # route with a longer tail comes before one it could be mistaken for.
    @api.delete("/subjects/{subject:path}/versions/{version}")
    async def delete_version(self, subject: str, version: str, request: Request) -> Response:
        return await self._answer(self._call("delete_version", subject, version, permanent=_flag(request, "permanent")))

    @api.delete("/subjects/{subject:path}")
    async def delete_subject(self, subject: str, request: Request) -> Response:
        return await self._answer(self._call("delete_subject", subject, permanent=_flag(request, "permanent")))

    # -- schemas by id --------------------------------------------------------------------------

    @api.get("/schemas/types")
    async def schema_types(self) -> Response:
        return RegistryResponse(list(schema_types()))

    @api.get("/schemas/ids/{schema_id}")
    async def get_by_id(self, schema_id: str, request: Request) -> Response:
        async def work() -> Any:
            got = await self._call("get_by_id", _schema_id(schema_id), **_format(request))
            out = _schema_view(got, "schema")
            if got.get("references"):
                out["references"] = got["references"]
            return out
        return await self._answer(work())

    @api.get("/schemas/ids/{schema_id}/schema")
    async def get_schema_text(self, schema_id: str) -> Response:
        async def work() -> Any:
            got = await self._call("get_by_id", _schema_id(schema_id))
            return Response(content=got["schema"], media_type=CONTENT_TYPE)
        return await self._answer(work())

    @api.get("/schemas/ids/{schema_id}/versions")
    async def get_id_versions(self, schema_id: str) -> Response:
        async def work() -> Any:
            return await self._call("id_versions", _schema_id(schema_id))
        return await self._answer(work())

    @api.get("/schemas/ids/{schema_id}/subjects")
    async def get_id_subjects(self, schema_id: str) -> Response:
        async def work() -> Any:
            return await self._call("id_subjects", _schema_id(schema_id))
        return await self._answer(work())

    # -- compatibility --------------------------------------------------------------------------

    async def _compatibility(self, subject: str, version: "str | None", request: Request) -> Any:
        schema, schema_type, references = await _schema_body(request)
        verbose = _flag(request, "verbose")
        try:
            problems = await self._call(
                "check", subject, schema, version, schema_type, references, normalize=_flag(request, "normalize")
            )
        except _Refused as exc:
            if not (verbose and exc.error_code == 42201):
                raise
            problems = [exc.message]  # Confluent: with verbose, an invalid schema is an incompatible answer
        out: "dict[str, Any]" = {"is_compatible": not problems}
        if verbose:
            out["messages"] = list(problems)
        return out

    @api.post("/compatibility/subjects/{subject:path}/versions/{version}")
    async def check_version(self, subject: str, version: str, request: Request) -> Response:
        # One version, even under a transitive level (Confluent); "latest" of an unknown subject passes.
        return await self._answer(self._compatibility(subject, version, request))

    @api.post("/compatibility/subjects/{subject:path}/versions")
    async def check_all(self, subject: str, request: Request) -> Response:
        # As register checks: every live version under a transitive level, else the latest.
        return await self._answer(self._compatibility(subject, None, request))

    # -- config ---------------------------------------------------------------------------------

    async def _put_config(self, request: Request, subject: "str | None") -> Any:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _Refused(422, 42203, "Invalid config: body must be a JSON object")
        level = body.get("compatibility", body.get("compatibilityLevel"))
        options = {"normalize": body.get("normalize"), "validate_new_schemas": body.get("validateNewSchemas")}
        if level is None and all(v is None for v in options.values()):
            raise _Refused(
                422, 42203, 'Invalid config: set at least one of "compatibility", "normalize", "validateNewSchemas"'
            )
        if level is not None and not isinstance(level, str):
            raise _Refused(422, 42203, f"Invalid compatibility level {level!r}")
        return await self._call("update_config", subject, compatibility=level, **options)

    @api.get("/config")
    async def get_global_config(self) -> Response:
        return await self._answer(self._call("get_config_body", None))

    @api.put("/config")
    async def put_global_config(self, request: Request) -> Response:
        return await self._answer(self._put_config(request, None))

    @api.get("/config/{subject:path}")
    async def get_subject_config(self, subject: str, request: Request) -> Response:
        # As Confluent: the subject's own level, 404/40408 when it has none; with
        # ?defaultToGlobal=true the global level answers for it.
        return await self._answer(
            self._call("get_config_body", subject, default_to_global=_flag(request, "defaultToGlobal"))
        )

    @api.put("/config/{subject:path}")
    async def put_subject_config(self, subject: str, request: Request) -> Response:
        return await self._answer(self._put_config(request, subject))

    @api.delete("/config/{subject:path}")
    async def delete_subject_config(self, subject: str) -> Response:
        async def work() -> Any:
            return {"compatibilityLevel": await self._call("delete_config", subject)}
        return await self._answer(work())

    @api.get("/")
    async def root(self) -> Response:
        return RegistryResponse({})


def build_app(args: "dict[str, Any]") -> serve.Application:
    """Serve application builder (``import_path: serving.registry:build_app``).

    Args:
        args: ``namespace`` (Ray namespace of the ``RegistryActor``, default ``fabric``),
            ``replicas`` (default 1).
    """
    return SchemaRegistryServer.options(num_replicas=int(args.get("replicas", 1))).bind(
        str(args.get("namespace", "fabric"))
    )
