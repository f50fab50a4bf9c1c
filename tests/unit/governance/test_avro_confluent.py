"""Confluent Schema Registry's own Avro cases, ported mechanically; each row names its source method.

Sources (confluentinc/schema-registry):

* ``core/src/test/java/io/confluent/kafka/schemaregistry/avro/AvroCompatibilityTest.java``: every
  assertion, as ``(method, message, checker, new schema, previous schemas oldest first, compatible?)``.
  Confluent's ``isCompatible(new, previous)`` lists previous schemas oldest first and checks the last
  (non-transitive) or all (transitive); so does :func:`fabric_ray.governance.avro.check_mode`.
* ``avro-serializer/src/test/java/io/confluent/kafka/serializers/AvroSchemaTest.java``: the
  assertions about parsing, identity (``canonicalString``, ``equals``) and ``normalize()``. The rest
  of that file converts Java datums (``testPrimitiveTypesToAvro``, ``...ToJson``, ...), edits schema
  tags (``testBasicAddAndRemoveTags``, ``testNamespace``, ...) or reads data-contract metadata
  (``testHasTopLevelField``, ``testGetReservedFields``): serializer and data-contract features a
  registry of ours does not have, listed in docs/schema-compatibility.md.

Each compatibility case also runs through our own resolver (:func:`avro.check_compatibility`), which
writes the messages, to show where it and the reference checker disagree (nowhere, in these cases).
And every verdict is checked on real data: records fastavro generates for the writer decode with the
reader for each pair judged compatible, and some fail to for each pair refused.
"""

import io
import json
import random

import avro.compatibility as avro_compat
import fastavro
import pytest
from fastavro.utils import generate_many

from fabric_ray.governance import avro
from fabric_ray.governance.avro_format import FORMAT
from fabric_ray.governance.formats import SchemaFormatError

# -- AvroCompatibilityTest ----------------------------------------------------------------------------

S1 = '{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"}]}'
S2 = ('{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"},'
      ' {"type":"string","name":"f2", "default": "foo"}]}')
S3 = '{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"}, {"type":"string","name":"f2"}]}'
S4 = '{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1_new", "aliases": ["f1"]}]}'
S6 = '{"type":"record","name":"myrecord","fields":[{"type":["null", "string"],"name":"f1", "doc":"doc of f1"}]}'
S7 = ('{"type":"record","name":"myrecord","fields":[{"type":["null", "string", "int"],"name":"f1",'
      ' "doc":"doc of f1"}]}')
S8 = ('{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"},'
      ' {"type":"string","name":"f2", "default": "foo"}, {"type":"string","name":"f3", "default": "bar"}]}')
BAD_DEFAULT_NULL = ('{"type":"record","name":"myrecord","fields":[{"type":["null", "string"],"name":"f1",'
                    ' "default": "null"}, {"type":"string","name":"f2", "default": "foo"},'
                    ' {"type":"string","name":"f3", "default": "bar"}]}')

CASES = [
    # testBasicBackwardsCompatibility
    ("testBasicBackwardsCompatibility", "adding a field with default", "BACKWARD", S2, [S1], True),
    ("testBasicBackwardsCompatibility", "adding a field w/o default", "BACKWARD", S3, [S1], False),
    ("testBasicBackwardsCompatibility", "changing field name with alias", "BACKWARD", S4, [S1], True),
    ("testBasicBackwardsCompatibility", "evolving a field type to a union", "BACKWARD", S6, [S1], True),
    ("testBasicBackwardsCompatibility", "removing a type from a union", "BACKWARD", S1, [S6], False),
    ("testBasicBackwardsCompatibility", "adding a new type in union", "BACKWARD", S7, [S6], True),
    ("testBasicBackwardsCompatibility", "removing a type from a union", "BACKWARD", S6, [S7], False),
    ("testBasicBackwardsCompatibility", "only the latest (schema 2) is checked", "BACKWARD", S3, [S1, S2], True),
    # testBasicBackwardsTransitiveCompatibility
    ("testBasicBackwardsTransitiveCompatibility", "iteratively adding fields with defaults",
     "BACKWARD_TRANSITIVE", S8, [S1, S2], True),
    ("testBasicBackwardsTransitiveCompatibility", "adding a field with default", "BACKWARD_TRANSITIVE", S2, [S1], True),
    ("testBasicBackwardsTransitiveCompatibility", "removing a default, not transitively", "BACKWARD_TRANSITIVE",
     S3, [S2], True),
    ("testBasicBackwardsTransitiveCompatibility", "removing a default is not transitively compatible",
     "BACKWARD_TRANSITIVE", S3, [S2, S1], False),
    # testBasicForwardsCompatibility
    ("testBasicForwardsCompatibility", "adding a field", "FORWARD", S2, [S1], True),
    ("testBasicForwardsCompatibility", "adding a field", "FORWARD", S3, [S1], True),
    ("testBasicForwardsCompatibility", "adding a field", "FORWARD", S3, [S2], True),
    ("testBasicForwardsCompatibility", "adding a field", "FORWARD", S2, [S3], True),
    ("testBasicForwardsCompatibility", "only the latest (schema 2) is checked", "FORWARD", S1, [S3, S2], True),
    # testBasicForwardsTransitiveCompatibility
    ("testBasicForwardsTransitiveCompatibility", "iteratively removing fields with defaults",
     "FORWARD_TRANSITIVE", S1, [S8, S2], True),
    ("testBasicForwardsTransitiveCompatibility", "adding default to a field", "FORWARD_TRANSITIVE", S2, [S3], True),
    ("testBasicForwardsTransitiveCompatibility", "removing a field with a default", "FORWARD_TRANSITIVE",
     S1, [S2], True),
    ("testBasicForwardsTransitiveCompatibility", "removing a default is not transitively compatible",
     "FORWARD_TRANSITIVE", S1, [S2, S3], False),
    # testBasicFullCompatibility
    ("testBasicFullCompatibility", "adding a field with default", "FULL", S2, [S1], True),
    ("testBasicFullCompatibility", "only schema 2 is checked (adding w/o default)", "FULL", S3, [S1, S2], True),
    ("testBasicFullCompatibility", "only schema 2 is checked (removing w/o default)", "FULL", S1, [S3, S2], True),
    # testBasicFullTransitiveCompatibility
    ("testBasicFullTransitiveCompatibility", "iteratively adding fields with defaults", "FULL_TRANSITIVE",
     S8, [S1, S2], True),
    ("testBasicFullTransitiveCompatibility", "iteratively removing fields with defaults", "FULL_TRANSITIVE",
     S1, [S8, S2], True),
    ("testBasicFullTransitiveCompatibility", "adding default to a field", "FULL_TRANSITIVE", S2, [S3], True),
    ("testBasicFullTransitiveCompatibility", "removing a field with a default", "FULL_TRANSITIVE", S1, [S2], True),
    ("testBasicFullTransitiveCompatibility", "adding a field with default", "FULL_TRANSITIVE", S2, [S1], True),
    ("testBasicFullTransitiveCompatibility", "removing a default from a field", "FULL_TRANSITIVE", S3, [S2], True),
    ("testBasicFullTransitiveCompatibility", "transitively adding a field without a default", "FULL_TRANSITIVE",
     S3, [S2, S1], False),
    ("testBasicFullTransitiveCompatibility", "transitively removing a field without a default", "FULL_TRANSITIVE",
     S1, [S2, S3], False),
]


def parse(text: str, validate: bool = True):
    return FORMAT.parse(text, [], validate=validate)


@pytest.mark.parametrize(
    "method, message, mode, new, previous, compatible", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_avro_compatibility_test(method, message, mode, new, previous, compatible):
    """AvroCompatibilityTest.<method>: Confluent's verdict, from the reference checker."""
    problems = avro.check_mode(mode, parse(new), [parse(p) for p in previous], checker=FORMAT.check)
    assert (not problems) == compatible, (message, problems)
    if not compatible:
        assert all("field 'f" in p or "union" in p for p in problems), problems  # messages name the field


@pytest.mark.parametrize(
    "method, message, mode, new, previous, compatible", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_our_resolver_agrees_with_the_reference_checker(method, message, mode, new, previous, compatible):
    """The same cases through our own resolver alone (it writes the messages): the same verdicts."""
    ours = avro.check_mode(mode, parse(new).tree, [parse(p).tree for p in previous])
    assert (not ours) == compatible, (message, ours)


def test_bad_default_null():
    """AvroCompatibilityTest.testBadDefaultNull: parsed as an existing schema (no default validation)."""
    assert FORMAT.text(parse(BAD_DEFAULT_NULL, validate=False)).startswith('{"type":"record","name":"myrecord"')
    # As a new schema (validateNewSchemas, Confluent's default) the default is checked, as Avro Java's
    # validating parser does: "null" (a string) is not null.
    with pytest.raises(SchemaFormatError, match="first union branch"):
        parse(BAD_DEFAULT_NULL)


# -- AvroSchemaTest -------------------------------------------------------------------------------------


def _test_record(extra: str = "", null_field: str = "") -> str:
    """AvroSchemaTest's ``recordSchema`` family: ``extra`` top-level attributes, ``null_field`` on field 'null'."""
    return (
        '{"namespace": "namespace", "type": "record", "name": "test",' + extra + ' "fields": ['
        '{"name": "null", "type": "null"' + null_field + '},'
        '{"name": "boolean", "type": "boolean"}, {"name": "int", "type": "int"}, {"name": "long", "type": "long"},'
        '{"name": "float", "type": "float"}, {"name": "double", "type": "double"}, {"name": "bytes", "type": "bytes"},'
        '{"name": "string", "type": "string", "aliases": ["string_alias"]},'
        '{"name": "null_default", "type": "null", "default": null},'
        '{"name": "boolean_default", "type": "boolean", "default": false},'
        '{"name": "int_default", "type": "int", "default": 24},'
        '{"name": "long_default", "type": "long", "default": 4000000000},'
        '{"name": "float_default", "type": "float", "default": 12.3},'
        '{"name": "double_default", "type": "double", "default": 23.2},'
        '{"name": "bytes_default", "type": "bytes", "default": "bytes"},'
        '{"name": "string_default", "type": "string", "default": "default string"}]}'
    )


RECORD = _test_record()
ARRAY = '{"namespace": "namespace", "type": "array", "name": "test", "items": "string"}'
ARRAY_DEFAULT = '{"namespace": "namespace", "type": "array", "name": "test", "items": "string", "default": []}'
MAP = '{"namespace": "namespace", "type": "map", "name": "test", "values": "string"}'
MAP_DEFAULT = '{"namespace": "namespace", "type": "map", "name": "test", "values": "string", "default": {}}'
UNION = '{"type": "record", "name": "test", "fields": [{"name": "union", "type": ["string", "int"]}]}'
UNION_DEFAULT = '{"type": "record", "name": "test", "fields": [{"name": "union", "type": ["string", "int"], "default": ""}]}'
ENUM = '{ "type": "enum", "name": "Suit", "symbols" : ["SPADES", "HEARTS", "DIAMONDS", "CLUBS"]}'
ENUM2 = '{ "type": "enum", "name": "Suit", "symbols" : ["SPADES", "HEARTS", "DIAMONDS"]}'
ENUM_DEFAULT = '{ "type": "enum", "name": "Suit", "symbols" : ["SPADES", "HEARTS", "DIAMONDS", "CLUBS"], "default" : "HEARTS"}'


def _array_of_top(doc: str) -> str:
    return ('{"type": "array", "items": {"type": "record", "name": "top", "doc": "' + doc
            + '", "fields": [{"name": "field1", "type": "string"}]}}')


# (method, schema a, schema b): Confluent asserts the two AvroSchemas are not equal, so they are
# different schemas to a registry: different texts, different ids.
NOT_EQUAL = [
    ("testMetaInequalities (record doc)", RECORD, _test_record(extra=' "doc": "test",')),
    ("testMetaInequalities (record aliases)", RECORD, _test_record(extra=' "aliases": ["test"],')),
    ("testMetaInequalities (field doc)", RECORD, _test_record(null_field=', "doc": "test"')),
    ("testMetaInequalities (field aliases)", RECORD, _test_record(null_field=', "aliases": ["test"]')),
    ("testArrayWithDefault", MAP, MAP_DEFAULT),  # (sic: Confluent's method names are swapped)
    ("testMapWithDefault", ARRAY, ARRAY_DEFAULT),
    ("testUnionWithDefault", UNION, UNION_DEFAULT),
    ("testEnumWithDefault", ENUM, ENUM_DEFAULT),
    ("testArrayWithDoc", _array_of_top("test"), _array_of_top("test2")),
]


@pytest.mark.parametrize("method, a, b", NOT_EQUAL, ids=[c[0] for c in NOT_EQUAL])
def test_avro_schema_test_not_equal(method, a, b):
    """AvroSchemaTest.<method>: assertNotEquals(new AvroSchema(a), new AvroSchema(b))."""
    assert FORMAT.text(parse(a)) != FORMAT.text(parse(b))
    assert FORMAT.normalized(parse(a)) != FORMAT.normalized(parse(b))


def test_non_ascii_utf8_names_accepted():
    """AvroSchemaTest.testNonAsciiUtf8NamesAccepted"""
    schema = ('{"type":"record","name":"Café","namespace":"a.b","fields":[{"name":"naïve","type":"string"},'
              '{"name":"e","type":{"type":"enum","name":"Σ","symbols":["Α","Β"]}}]}')
    parsed = FORMAT.parse(schema, [], validate=False)
    assert parsed.tree.name == "a.b.Café"
    assert [f.name for f in parsed.tree.fields] == ["naïve", "e"]
    assert FORMAT.text(parsed) == schema  # already in Avro Java's order


def test_enum_compatibility():
    """AvroSchemaTest.testEnumCompatibility: schema2.isBackwardCompatible(schema1) is not empty."""
    problems = FORMAT.check(parse(ENUM2), parse(ENUM))
    assert problems and "CLUBS" in problems[0] and "MISSING_ENUM_SYMBOLS" in problems[0]


def test_invalid_default_during_normalize():
    """AvroSchemaTest.testInvalidDefaultDuringNormalize: parseSchema(..., isNew=true, normalize=true) is empty."""
    invalid = ('{"namespace": "namespace", "type": "record", "name": "test", "fields": ['
               '{"name": "string_default", "type": "string", "default": null}]}')
    with pytest.raises(SchemaFormatError, match="default None does not match type string"):
        parse(invalid, validate=True)


def test_normalization():
    """AvroSchemaTest.testNormalization: canonicalString() and normalize().canonicalString()."""
    schema = '{"type":"record","name":"myrecord","doc":"hi\\"there","fields":[{"type":"string","name":"f1","doc":"bye\\"now"}]}'
    normalized = '{"type":"record","name":"myrecord","doc":"hi\\"there","fields":[{"name":"f1","type":"string","doc":"bye\\"now"}]}'
    assert FORMAT.text(parse(schema)) == normalized
    assert FORMAT.normalized(parse(schema)) == normalized


def test_normalization_preserves_metadata_for_primitive_types():
    """AvroSchemaTest.testNormalizationPreservesMetadataForPrimitiveTypes"""
    schema = (
        '{"connect.name": "some.scope.Envelope","fields": [{"default": null,"name": "before","type": ["null",'
        '{"connect.name": "some.scope.Value","fields": [{"name": "created_at","type": {"connect.name": '
        '"io.debezium.time.Timestamp","connect.version": 1,"type": "long"}},{"name":"normal_long","type":"long"}],'
        '"name": "Value","type": "record"}]},{"default": null,"name": "after","type": ["null","Value"]}],'
        '"name": "Envelope","namespace": "some.scope","type": "record"}'
    )
    normalized = (
        '{"type":"record","name":"Envelope","namespace":"some.scope","fields":[{"name":"before","type":["null",'
        '{"type":"record","name":"Value","fields":[{"name":"created_at","type":{"type":"long","connect.name":'
        '"io.debezium.time.Timestamp","connect.version":1}},{"name":"normal_long","type":"long"}],'
        '"connect.name":"some.scope.Value"}],"default":null},{"name":"after","type":["null","Value"],"default":null}],'
        '"connect.name":"some.scope.Envelope"}'
    )
    assert FORMAT.text(parse(schema)) == normalized
    assert FORMAT.normalized(parse(schema)) == normalized


def test_variant_logical_type_parse():
    """AvroSchemaTest.testVariantLogicalTypeParse: a record's logicalType survives normalize()."""
    schema = ('{"type":"record","name":"x","fields":[{"name":"metadata","type":"bytes"},'
              '{"name":"value","type":"bytes"}],"logicalType":"variant"}')
    assert FORMAT.text(parse(schema)) == schema
    assert FORMAT.normalized(parse(schema)) == schema


# -- normalization beyond Confluent's cases: what normalize=true makes equal ---------------------------


@pytest.mark.parametrize("a, b", [
    ('{"type": "long", "b": 1, "a": 2}', '{"a": 2, "type": "long", "b": 1}'),
    ('{"type":"record","name":"r","namespace":"n","aliases":["z","y"],"fields":[]}',
     '{"type":"record","name":"n.r","aliases":["n.y","z"],"fields":[]}'),
    ('{"type":"record","name":"r","fields":[{"name":"d","type":"double","default":1}]}',
     '{"type":"record","name":"r","fields":[{"name":"d","type":"double","default":1.0}]}'),
    ('{"type":"bytes","scale":2,"logicalType":"decimal","precision":9}',
     '{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}'),
])
def test_normalize_makes_equal_what_differs_only_in_order_or_spelling(a, b):
    assert FORMAT.text(parse(a)) != FORMAT.text(parse(b))
    assert FORMAT.normalized(parse(a)) == FORMAT.normalized(parse(b))


# -- deliberate difference: logical types that change meaning ------------------------------------------


def _field(logical: dict) -> str:
    return '{"type":"record","name":"r","fields":[{"name":"v","type":' + json.dumps(logical) + "}]}"


@pytest.mark.parametrize("reader, writer, compatible", [
    ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
     {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3}, False),  # 1.234 read as 12.34
    ({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
     {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, False),  # may not fit
    ({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
     {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, True),
    ({"type": "long", "logicalType": "timestamp-micros"}, {"type": "long", "logicalType": "timestamp-millis"}, False),
    ({"type": "int", "logicalType": "date"}, {"type": "int", "logicalType": "time-millis"}, False),
    ({"type": "long"}, {"type": "long", "logicalType": "timestamp-millis"}, True),  # one side only: fine
    ({"type": "long", "logicalType": "timestamp-millis"}, "long", True),
])
def test_logical_types_that_change_meaning_are_incompatible(reader, writer, compatible):
    """Not a Confluent case: Avro's resolution (and Confluent) accept all of these; see docs/schema-compatibility.md."""
    reference = avro_compat.ReaderWriterCompatibilityChecker().get_compatibility(
        parse(_field(reader)).reference, parse(_field(writer)).reference
    )
    assert reference.compatibility is avro_compat.SchemaCompatibilityType.compatible
    problems = FORMAT.check(parse(_field(reader)), parse(_field(writer)))
    assert (not problems) == compatible, problems
    if problems:
        assert "field 'v'" in problems[0] and "logical type" in problems[0]


def test_schemas_the_python_reference_cannot_read_are_checked_by_our_resolver():
    """Non-ASCII names (Avro Java 1.12 and Confluent accept them; the Python package does not) still get a verdict."""
    reader = parse('{"type":"record","name":"Café","fields":[{"name":"naïve","type":"string"}]}')
    writer = parse('{"type":"record","name":"Café","fields":[{"name":"naïve","type":"int"}]}')
    assert FORMAT.check(reader, writer) == ["record 'Café' field 'naïve': reader type string cannot read writer type int"]
    assert FORMAT.check(reader, reader) == []
    # an error type is a record to both checkers
    err = parse('{"type":"error","name":"E","fields":[{"name":"code","type":"int"}]}')
    assert FORMAT.check(err, err) == []
    assert FORMAT.check(parse('{"type":"error","name":"E","fields":[{"name":"m","type":"string"}]}'), err)


# -- soundness probe: every "compatible" pair above really reads ---------------------------------------


def _pairs(mode: str, new: str, previous: list[str]) -> list[tuple[str, str]]:
    """(reader, writer) pairs a mode's verdict vouches for."""
    against = previous if mode.endswith("_TRANSITIVE") else previous[-1:]
    pairs = []
    for old in against:
        if mode.startswith(("BACKWARD", "FULL")):
            pairs.append((new, old))
        if mode.startswith(("FORWARD", "FULL")):
            pairs.append((old, new))
    return pairs


COMPATIBLE_PAIRS = sorted({pair for c in CASES if c[5] for pair in _pairs(c[2], c[3], c[4])})


@pytest.mark.parametrize("reader, writer", COMPATIBLE_PAIRS)
def test_compatible_pairs_read_real_data(reader, writer):
    """Data written with the writer (fastavro, generated records) decodes with the reader: the verdict holds."""
    random.seed(0)  # fastavro's generator draws from random: the same records every run
    writer_schema = fastavro.parse_schema(json.loads(writer))
    reader_schema = fastavro.parse_schema(json.loads(reader))
    for record in generate_many(writer_schema, 20):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer_schema, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, writer_schema, reader_schema)
        assert set(read) == {f["name"] for f in json.loads(reader)["fields"]}


REFUSED_PAIRS = sorted({
    (r, w) for c in CASES if not c[5] for r, w in _pairs(c[2], c[3], c[4]) if FORMAT.check(parse(r), parse(w))
})


@pytest.mark.parametrize("reader, writer", REFUSED_PAIRS)
def test_refused_pairs_fail_on_real_data(reader, writer):
    """And each refused pair is refused for a reason: some record written with the writer does not decode."""
    random.seed(0)  # fastavro's generator draws from random: the same records every run
    writer_schema = fastavro.parse_schema(json.loads(writer))
    reader_schema = fastavro.parse_schema(json.loads(reader))
    failures = 0
    for record in generate_many(writer_schema, 50):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer_schema, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, writer_schema, reader_schema)
        except fastavro.read.SchemaResolutionError:
            failures += 1
    assert failures > 0


ALL_SCHEMAS = sorted({S1, S2, S3, S4, S6, S7, S8, RECORD, ARRAY, ARRAY_DEFAULT, MAP, MAP_DEFAULT, UNION, UNION_DEFAULT,
                      ENUM, ENUM2, ENUM_DEFAULT, _array_of_top("test")} | {b for _, _, b in NOT_EQUAL})


@pytest.mark.parametrize("schema", ALL_SCHEMAS)
def test_text_and_normalized_text_are_fixed_points_and_read_data_alike(schema):
    """Stored texts parse back to themselves (a registry re-reading its own text keeps the id)."""
    text = FORMAT.text(parse(schema))
    assert FORMAT.text(parse(text)) == text
    normalized = FORMAT.normalized(parse(schema))
    assert FORMAT.normalized(parse(normalized)) == normalized == FORMAT.text(parse(normalized))
    assert avro.canonical_form(text) == avro.canonical_form(schema) == avro.canonical_form(normalized)
