"""Data products: declared, validated, and registered all together or not at all.

A data product names a stream topic and/or a dataset, its owner and domain, the schema its
records follow, what every record must satisfy (required fields, quality rules), how fresh it
must be, and which fields hold personal or sensitive data. Products are written in YAML, one
file per product (or several, as a list or ``---`` documents)::

    name: payments
    domain: payments
    owner: payments-team@example.com
    topic: payments
    schema: payments.avsc          # or inline; a path is relative to the YAML file
    required: [event_id, user_id, amount]
    freshness: 5m
    rules:
      - between: {column: amount, min: 0, max: 10000}
      - in_set: {column: currency, values: [EUR, USD]}
    fields:
      card_number: [pii]
    access: {readers: [fraud]}     # kept as-is; not enforced yet

:func:`load_products` reads and validates a directory, reporting every problem of every file
at once; :func:`apply_products` registers each product's schema under its subject (with the
registry's compatibility check) and stores the product, in one transaction.

Example:
    >>> from fabric_ray.governance.registry import SchemaRegistry
    >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
    >>> product = DataProduct.from_dict({
    ...     "name": "payments", "domain": "payments", "owner": "risk", "topic": "payments",
    ...     "schema": {"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "double"}]},
    ...     "required": ["amount"], "freshness": "5m",
    ...     "rules": [{"between": {"column": "amount", "min": 0, "max": 10000}}]})
    >>> product.subject, product.freshness_s
    ('payments-value', 300.0)
    >>> registry = SchemaRegistry(MemoryRegistryStore())
    >>> print(apply_products(registry, [product]))
    payments: subject payments-value version 1 (schema id 1): new
    >>> get_product(registry.store, "payments") == product
    True
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from fabric_ray.governance import avro, json_schema
from fabric_ray.governance.registry import RegistryError, SchemaRegistry
from fabric_ray.governance.registry_store import RegistryStore
from fabric_ray.quality.rules import Rule, RuleError, parse_rule

__all__ = [
    "PRODUCT_KEYS",
    "TAGS",
    "ApplyError",
    "ApplyReport",
    "DataProduct",
    "ProductApply",
    "ProductError",
    "apply_products",
    "format_duration",
    "get_product",
    "list_products",
    "load_products",
    "parse_duration",
]

PRODUCT_KEYS = (
    "name", "domain", "owner", "description", "topic", "dataset", "schema", "schema_type", "subject",
    "required", "freshness", "rules", "fields", "access",
)
_MANDATORY = ("name", "domain", "owner", "schema")
TAGS = ("pii", "sensitive")
SCHEMA_TYPES = ("AVRO", "JSON")
SCHEMA_SUFFIXES = (".avsc", ".json")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class ProductError(ValueError):
    """One or more products are invalid; ``problems`` holds one line per problem.

    Each line names the file (when loaded from one), the product, and the key, field or rule.

    Example:
        >>> str(ProductError(["a.yaml: product 'p': owner: missing", "b.yaml: not valid YAML"]))
        "2 problems:\\n  a.yaml: product 'p': owner: missing\\n  b.yaml: not valid YAML"
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems))


class ApplyError(RegistryError):
    """Applying products failed and nothing was written; ``problems`` names each product and subject."""

    def __init__(self, status: int, error_code: int, problems: Sequence[str]) -> None:
        super().__init__(status, error_code, "; ".join(problems))
        self.problems = list(problems)


# -- durations ----------------------------------------------------------------------------------


def parse_duration(value: Any) -> float:
    """Seconds in a duration: a number of seconds, or text like ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``.

    Raises:
        ValueError: not a positive duration; names the value.

    Example:
        >>> parse_duration("5m"), parse_duration("1h30m"), parse_duration(90), parse_duration("250ms")
        (300.0, 5400.0, 90.0, 0.25)
        >>> parse_duration("5 minutes")
        Traceback (most recent call last):
        ...
        ValueError: duration '5 minutes' is not a positive number of seconds or text like 30s, 5m, 1h30m, 2d
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds is None or seconds <= 0:
        raise ValueError(
            f"duration {value!r} is not a positive number of seconds or text like 30s, 5m, 1h30m, 2d"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds``.

    Example:
        >>> format_duration(300), format_duration(5400), format_duration(0.25), format_duration(90061)
        ('5m', '1h30m', '250ms', '1d1h1m1s')
    """
    ms = round(seconds * 1000)
    if ms != seconds * 1000:
        return f"{seconds}s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


# -- schemas ------------------------------------------------------------------------------------


def _read_schema(value: Any, base_dir: Path | None) -> Any:
    """The schema as a JSON value: inline values as they are, ``*.avsc``/``*.json`` paths read.

    Raises:
        ValueError: the file cannot be read or is not JSON; names the resolved path.
    """
    if not (isinstance(value, str) and value.strip().lower().endswith(SCHEMA_SUFFIXES)):
        if isinstance(value, str) and value.strip()[:1] in ("{", "[", '"'):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"inline schema text is not JSON: {exc}") from None
        return value
    path = Path(value.strip())
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"schema file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"schema file {str(path)!r} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"schema file {str(path)!r} is not JSON: {exc}") from None


_AVRO_KINDS = {"int": "number", "long": "number", "float": "number", "double": "number",
               "string": "text", "enum": "text", "boolean": "boolean"}
_JSON_KINDS = {"integer": "number", "number": "number", "string": "text", "boolean": "boolean"}


def _top_fields(schema_type: str, schema: Any) -> dict[str, str | None]:
    """Top-level field -> value kind (``number``, ``text``, ``boolean``, None: other) of a parsed schema.

    Raises:
        ValueError: the schema is not a record (Avro) or an object with ``properties`` (JSON Schema).
    """
    if schema_type == "AVRO":
        tree = avro.parse_avro(schema)
        if tree.type != "record":
            raise ValueError(f"an AVRO schema of type {tree.type!r} has no fields; declare a record")
        out: dict[str, str | None] = {}
        for f in tree.fields:
            t = f.type
            if t.type == "union":
                rest = [b for b in t.branches if b.type != "null"]
                t = rest[0] if len(rest) == 1 else t
            out[f.name] = None if t.logical_type and t.logical_type.startswith("decimal") else _AVRO_KINDS.get(t.type)
        return out
    doc = json_schema.parse_json_schema(schema)
    props = doc.get("properties") if isinstance(doc, dict) else None
    if not isinstance(props, dict):
        raise ValueError("a JSON schema without top-level properties has no fields; declare an object with properties")
    out = {}
    for name, sub in props.items():
        types = sub.get("type") if isinstance(sub, dict) else None
        types = [types] if isinstance(types, str) else types if isinstance(types, list) else []
        kinds = {_JSON_KINDS.get(t) for t in types if t != "null"}
        out[name] = kinds.pop() if len(kinds) == 1 else None
    return out


_RULE_KINDS = {"between": "number", "regex": "text"}


# -- the product --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataProduct:
    """A declared data product; validated when made, immutable afterwards.

    Attributes:
        name: unique product name (letters, digits, ``_ . -``; starts with a letter).
        domain: business domain owning it.
        owner: accountable team or person.
        schema: the records' schema as a JSON value (Avro or JSON Schema). A string ending in
            ``.avsc``/``.json`` is read from that file (relative paths: from the working
            directory, or from the YAML file with :meth:`from_dict`/:func:`load_products`).
        description: free text.
        topic: the stream topic carrying it.
        dataset: the dataset (table, path) holding it. At least one of topic and dataset.
        schema_type: ``AVRO`` (default) or ``JSON``.
        subject: registry subject; default ``<topic>-value``, or ``<name>-value`` without a topic.
        required: fields every record must have, not null.
        freshness_s: the freshness SLA in seconds (YAML: ``freshness: 5m``), or None.
        rules: quality rules (:mod:`fabric_ray.quality.rules`; dicts are parsed).
        fields: classification tags per field (``{"card_number": ("pii",)}``), tags from :data:`TAGS`.
        access: access policy, kept as declared; **not enforced yet**.
        source: the file it was loaded from, for messages (not part of the product's identity).

    Raises:
        ProductError: every problem found, each naming the product and the key, field or rule.

    Example:
        >>> DataProduct("p", "d", "o", {"type": "record", "name": "R", "fields": []}, required=["x"])
        Traceback (most recent call last):
        ...
        fabric_ray.governance.products.ProductError: 2 problems:
          product 'p': topic, dataset: declare a topic, a dataset or both
          product 'p': required: 'x' is not a field of the schema (fields: none)
    """

    name: str
    domain: str
    owner: str
    schema: Any = field(hash=False)
    description: str = ""
    topic: str | None = None
    dataset: str | None = None
    schema_type: str = "AVRO"
    subject: str | None = None
    required: tuple[str, ...] = ()
    freshness_s: float | None = None
    rules: tuple[Rule, ...] = ()
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    access: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        _Checker(self, problems).run()
        if problems:
            prefix = f"{self.source}: " if self.source else ""
            label = f"product {self.name!r}" if isinstance(self.name, str) and self.name else "product <unnamed>"
            raise ProductError([f"{prefix}{label}: {p}" for p in problems])

    # -- YAML / JSON ----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None, base_dir: str | Path | None = None) -> DataProduct:
        """A product from its YAML mapping (keys :data:`PRODUCT_KEYS`; ``freshness`` is a duration).

        Args:
            data: the mapping.
            source: where it came from, prefixed to every problem.
            base_dir: folder a schema file path is relative to.

        Raises:
            ProductError: every problem found (unknown keys with a suggestion, missing keys,
                bad values, columns the schema lacks).

        Example:
            >>> DataProduct.from_dict({"name": "p", "domian": "d"})
            Traceback (most recent call last):
            ...
            fabric_ray.governance.products.ProductError: 4 problems:
              product 'p': domian: unknown key (did you mean 'domain'?)
              product 'p': domain: missing
              product 'p': owner: missing
              product 'p': schema: missing
        """
        prefix = f"{source}: " if source else ""
        if not isinstance(data, Mapping):
            raise ProductError([f"{prefix}a product is a mapping of {', '.join(_MANDATORY)}, ...; got {type(data).__name__}"])
        name = data.get("name")
        label = f"{prefix}product {name!r}" if isinstance(name, str) and name else f"{prefix}product <unnamed>"
        problems = []
        for key in data:
            if key not in PRODUCT_KEYS:
                close = difflib.get_close_matches(str(key), PRODUCT_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(PRODUCT_KEYS)}"
                problems.append(f"{label}: {key}: unknown key{hint}")
        problems += [f"{label}: {key}: missing" for key in _MANDATORY if data.get(key) is None]
        args = {k: v for k, v in data.items() if k in PRODUCT_KEYS and k != "freshness"}
        if data.get("freshness") is not None:
            try:
                args["freshness_s"] = parse_duration(data["freshness"])
            except ValueError as exc:
                problems.append(f"{label}: freshness: {exc}")
        if "schema" in args:
            try:
                args["schema"] = _read_schema(args["schema"], Path(base_dir) if base_dir is not None else None)
            except ValueError as exc:
                problems.append(f"{label}: schema: {exc}")
                args.pop("schema")
        product = None
        if all(args.get(k) is not None for k in _MANDATORY):
            try:
                product = cls(**args, source=source)
            except ProductError as exc:
                problems += exc.problems
        if problems or product is None:
            raise ProductError(problems)
        return product

    def to_dict(self) -> dict[str, Any]:
        """The product as YAML would declare it (schema inline, subject resolved); :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {"name": self.name, "domain": self.domain, "owner": self.owner}
        if self.description:
            out["description"] = self.description
        for key in ("topic", "dataset"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out.update(schema=json.loads(json.dumps(self.schema)), schema_type=self.schema_type, subject=self.subject)
        if self.required:
            out["required"] = list(self.required)
        if self.freshness_s is not None:
            out["freshness"] = format_duration(self.freshness_s)
        if self.rules:
            out["rules"] = [r.to_dict() for r in self.rules]
        if self.fields:
            out["fields"] = {k: list(v) for k, v in self.fields.items()}
        if self.access:
            out["access"] = json.loads(json.dumps(self.access))
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON with sorted keys: equal products give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def schema_text(self) -> str:
        """The schema as JSON text, as registered."""
        return json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)

    def tagged(self, tag: str) -> tuple[str, ...]:
        """Fields carrying ``tag`` (e.g. ``pii``), in declaration order."""
        return tuple(name for name, tags in self.fields.items() if tag in tags)


class _Checker:
    """Validates and normalises a :class:`DataProduct` in place, collecting problems as text."""

    def __init__(self, product: DataProduct, problems: list[str]) -> None:
        self.p = product
        self.problems = problems

    def set(self, key: str, value: Any) -> None:
        object.__setattr__(self.p, key, value)

    def run(self) -> None:
        p = self.p
        if not isinstance(p.name, str) or not _NAME.match(p.name):
            self.problems.append(f"name: must start with a letter and hold letters, digits, '_', '.', '-'; got {p.name!r}")
        for key in ("domain", "owner"):
            value = getattr(p, key)
            if not isinstance(value, str) or not value.strip():
                self.problems.append(f"{key}: must be a non-empty string; got {value!r}")
        if not isinstance(p.description, str):
            self.problems.append(f"description: must be text; got {p.description!r}")
        for key in ("topic", "dataset"):
            value = getattr(p, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                self.problems.append(f"{key}: must be a non-empty string; got {value!r}")
        if p.topic is None and p.dataset is None:
            self.problems.append("topic, dataset: declare a topic, a dataset or both")
        self.check_subject()
        self.check_freshness()
        names = self.check_schema()
        self.check_required(names)
        self.check_rules(names)
        self.check_fields(names)
        self.check_access()

    def check_subject(self) -> None:
        p = self.p
        if p.subject is None:
            base = p.topic if isinstance(p.topic, str) and p.topic else p.name
            self.set("subject", f"{base}-value")
        elif not isinstance(p.subject, str) or not p.subject.strip():
            self.problems.append(f"subject: must be a non-empty string; got {p.subject!r}")

    def check_freshness(self) -> None:
        f = self.p.freshness_s
        if f is None:
            return
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 0:
            self.problems.append(f"freshness: must be a positive number of seconds; got {f!r}")
        else:
            self.set("freshness_s", float(f))

    def check_schema(self) -> dict[str, str | None] | None:
        p = self.p
        st = p.schema_type.upper() if isinstance(p.schema_type, str) else p.schema_type
        if st not in SCHEMA_TYPES:
            self.problems.append(f"schema_type: must be one of {', '.join(SCHEMA_TYPES)}; got {p.schema_type!r}")
            return None
        self.set("schema_type", st)
        try:
            schema = _read_schema(p.schema, None)
            schema = json.loads(json.dumps(schema))  # a private, plain-JSON copy
        except (ValueError, TypeError) as exc:
            self.problems.append(f"schema: {exc}")
            return None
        self.set("schema", schema)
        try:
            return _top_fields(st, schema)
        except (avro.AvroSchemaError, json_schema.JsonSchemaError) as exc:
            # The registry would answer 422/42201 with the same text.
            self.problems.append(f"schema: invalid {st} schema (422): {exc}")
        except ValueError as exc:
            self.problems.append(f"schema: {exc}")
        return None

    def missing(self, column: str, names: dict[str, str | None] | None) -> str | None:
        if names is None or column in names:
            return None
        return f"{column!r} is not a field of the schema (fields: {', '.join(names) or 'none'})"

    def check_required(self, names: dict[str, str | None] | None) -> None:
        req = self.p.required
        if isinstance(req, str) or not isinstance(req, (list, tuple)) or not all(isinstance(r, str) and r for r in req):
            self.problems.append(f"required: must be a list of field names; got {req!r}")
            self.set("required", ())
            return
        self.set("required", tuple(req))
        seen: set[str] = set()
        for column in req:
            if column in seen:
                self.problems.append(f"required: {column!r} is listed twice")
            seen.add(column)
            why = self.missing(column, names)
            if why:
                self.problems.append(f"required: {why}")

    def check_rules(self, names: dict[str, str | None] | None) -> None:
        raw = self.p.rules
        if not isinstance(raw, (list, tuple)):
            self.problems.append(f"rules: must be a list; got {raw!r}")
            self.set("rules", ())
            return
        rules, labels = [], set()
        for i, spec in enumerate(raw):
            try:
                rule = parse_rule(spec)
            except RuleError as exc:
                self.problems.append(f"rules[{i}]: {exc}")
                continue
            where = f"rules[{i}] ({rule})"
            if str(rule) in labels:
                self.problems.append(f"{where}: declared twice")
            labels.add(str(rule))
            for column in rule.columns:
                why = self.missing(column, names)
                if why:
                    self.problems.append(f"{where}: {why}")
                elif names is not None:
                    want, have = _RULE_KINDS.get(rule.kind), names[column]
                    if want and have and want != have:
                        self.problems.append(f"{where}: field {column!r} holds {have}, the rule needs {want}")
            rules.append(rule)
        self.set("rules", tuple(rules))

    def check_fields(self, names: dict[str, str | None] | None) -> None:
        raw = self.p.fields
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.problems.append(f"fields: must map field names to tag lists; got {raw!r}")
            self.set("fields", {})
            return
        out: dict[str, tuple[str, ...]] = {}
        for column, tags in raw.items():
            tags = (tags,) if isinstance(tags, str) else tags
            if not isinstance(tags, (list, tuple)) or not tags:
                self.problems.append(f"fields.{column}: must be a non-empty list of tags ({', '.join(TAGS)}); got {tags!r}")
                continue
            bad = [t for t in tags if t not in TAGS]
            if bad:
                self.problems.append(f"fields.{column}: unknown tag {bad[0]!r}; allowed tags: {', '.join(TAGS)}")
            why = self.missing(str(column), names)
            if why:
                self.problems.append(f"fields.{column}: {why}")
            out[str(column)] = tuple(dict.fromkeys(tags))
        self.set("fields", out)

    def check_access(self) -> None:
        raw = self.p.access
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.problems.append(f"access: must be a mapping; got {raw!r}")
            self.set("access", {})
            return
        try:
            self.set("access", json.loads(json.dumps(dict(raw))))
        except (TypeError, ValueError) as exc:
            self.problems.append(f"access: must hold plain YAML/JSON values: {exc}")
            self.set("access", {})


# -- loading ------------------------------------------------------------------------------------


def load_products(path: str | Path) -> list[DataProduct]:
    """Read and validate every product in a YAML file, or in every ``*.yaml``/``*.yml`` of a folder.

    The folder's files are read in name order (not its subfolders). A file holds one product
    mapping, a list of them, or several ``---`` documents.

    Raises:
        ProductError: every problem of every file together, each line naming the file and the
            product; also duplicate product names across files, and a folder without YAML files.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "p.yaml").write_text("name: p\\ndomain: d\\nowner: o\\ndataset: t\\nschema: {type: record, name: R, fields: []}\\n")
        >>> _ = (d / "q.yml").write_text("name: p\\ndomain: d\\nownr: o\\n")
        >>> load_products(d)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fabric_ray.governance.products.ProductError: 4 problems:
          .../q.yml: product 'p': ownr: unknown key (did you mean 'owner'?)
          .../q.yml: product 'p': owner: missing
          .../q.yml: product 'p': schema: missing
          .../q.yml: product 'p': duplicate name, also defined in .../p.yaml
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(f for f in root.iterdir() if f.suffix.lower() in (".yaml", ".yml") and f.is_file())
        if not files:
            raise ProductError([f"{root}: no *.yaml or *.yml files"])
    elif root.is_file():
        files = [root]
    else:
        raise ProductError([f"{root}: no such file or folder"])
    products: list[DataProduct] = []
    problems: list[str] = []
    defined: dict[str, str] = {}
    for file in files:
        for index, data in _documents(file, problems):
            try:
                products.append(DataProduct.from_dict(data, source=str(file), base_dir=file.parent))
            except ProductError as exc:
                problems += exc.problems
            name = data.get("name") if isinstance(data, Mapping) else None
            if not isinstance(name, str) or not name:
                continue
            if name in defined:
                problems.append(f"{file}: product {name!r}: duplicate name, also defined in {defined[name]}")
            else:
                defined[name] = str(file) if index is None else f"{file} (#{index + 1})"
    if problems:
        raise ProductError(problems)
    return products


def _documents(file: Path, problems: list[str]) -> Iterable[tuple[int | None, Any]]:
    """``(index within the file or None, mapping)`` per product declared in ``file``."""
    try:
        docs = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        problems.append(f"{file}: not valid YAML: {' '.join(str(exc).split())}")
        return []
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{file}: cannot be read: {exc}")
        return []
    items = [d for doc in docs for d in (doc if isinstance(doc, list) else [doc])]
    if not items:
        problems.append(f"{file}: declares no product")
    return [(i if len(items) > 1 else None, d) for i, d in enumerate(items)]


# -- applying -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductApply:
    """What applying one product did (or, in a dry run, would do).

    Attributes:
        name: the product.
        subject: its registry subject.
        schema_id: the schema's global id.
        version: the subject version holding the schema.
        new_version: whether the schema became a new version of the subject.
        spec: ``created``, ``updated`` or ``unchanged``: what happened to the stored product.
    """

    name: str
    subject: str
    schema_id: int
    version: int
    new_version: bool
    spec: str

    @property
    def status(self) -> str:
        """``new`` (first apply), ``updated`` (new schema version or changed spec) or ``unchanged``."""
        if self.spec == "created":
            return "new"
        return "updated" if self.new_version or self.spec == "updated" else "unchanged"


@dataclass(frozen=True)
class ApplyReport:
    """The outcome of :func:`apply_products`, one :class:`ProductApply` per product in order."""

    results: tuple[ProductApply, ...]
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """Whether anything was (or, in a dry run, would be) written."""
        return any(r.status != "unchanged" for r in self.results)

    def __str__(self) -> str:
        return "\n".join(
            f"{r.name}: subject {r.subject} version {r.version} (schema id {r.schema_id}): {r.status}" for r in self.results
        )


class _Rollback(Exception):
    """Raised inside the transaction of a dry run so that nothing it wrote stays."""


def apply_products(registry: SchemaRegistry, products: Sequence[DataProduct], dry_run: bool = False) -> ApplyReport:
    """Register every product's schema under its subject and store every product, all in one transaction.

    Each schema goes through :meth:`SchemaRegistry.register`, so the subject's compatibility level
    applies. If any product fails, nothing is written: no schema version and no product row. A
    dry run does the same work and rolls it back, so its report shows the ids and versions a real
    run would get (unless someone else writes in between). Products already stored but not
    passed are left alone.

    Raises:
        ProductError: two products share a name.
        ApplyError: (a :class:`RegistryError`) one or more schemas were refused, e.g. 409 for an
            incompatible evolution; ``problems`` names each product and subject.

    Example:
        >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
        >>> r = SchemaRegistry(MemoryRegistryStore())
        >>> rec = lambda t: {"type": "record", "name": "R", "fields": [{"name": "x", "type": t}]}
        >>> p1 = DataProduct("p", "d", "o", rec("int"), topic="t")
        >>> apply_products(r, [p1], dry_run=True).results[0].version, r.subjects()
        (1, [])
        >>> apply_products(r, [p1]).results[0].status, apply_products(r, [p1]).results[0].status
        ('new', 'unchanged')
        >>> apply_products(r, [DataProduct("p", "d", "o", rec("string"), topic="t")])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fabric_ray.governance.products.ApplyError: 409/409: product 'p': Schema being registered is incompatible ...
    """
    dups = sorted(n for n, count in Counter(p.name for p in products).items() if count > 1)
    if dups:
        raise ProductError([f"product {n!r}: passed more than once" for n in dups])
    store = registry.store
    results: list[ProductApply] = []
    try:
        with registry.atomic():
            failures: list[tuple[RegistryError, str]] = []
            for p in products:
                where, subject = f"{p.source}: " if p.source else "", str(p.subject)  # validation set the subject
                before = len(store.versions(subject))
                try:
                    schema_id = registry.register(subject, p.schema_text, p.schema_type)
                except RegistryError as exc:
                    failures.append((exc, f"{where}product {p.name!r}: {exc.message}"))
                    continue
                rows = store.versions(subject)
                version = next(r.version for r in reversed(rows) if r.schema_id == schema_id and not r.deleted)
                old, spec = store.get_product(p.name), p.to_json()
                if old != spec:
                    store.put_product(p.name, spec)
                status = "created" if old is None else "unchanged" if old == spec else "updated"
                results.append(ProductApply(p.name, subject, schema_id, version, len(rows) > before, status))
            if failures:
                first = failures[0][0]
                raise ApplyError(first.status, first.error_code, [text for _, text in failures])
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    return ApplyReport(tuple(results), dry_run)


# -- reading back -------------------------------------------------------------------------------


def _stored(name: str, spec_json: str) -> DataProduct:
    try:
        return DataProduct.from_dict(json.loads(spec_json), source="metadata store")
    except json.JSONDecodeError as exc:
        raise ProductError([f"metadata store: product {name!r}: stored spec is not JSON: {exc}"]) from None


def list_products(store: RegistryStore) -> list[DataProduct]:
    """Every product in the store, by name.

    Raises:
        ProductError: a stored spec no longer validates (e.g. written by a newer version).
    """
    return [_stored(name, spec) for name, spec in store.list_products()]


def get_product(store: RegistryStore, name: str) -> DataProduct | None:
    """The stored product called ``name``, or None."""
    spec = store.get_product(name)
    return None if spec is None else _stored(name, spec)
