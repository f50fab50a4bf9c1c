"""The in-process point-in-time join: against pandas merge_asof, a brute-force oracle, and each documented edge."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_ray.etl.pit import FeatureTable, ParquetFiles, PitJoinError, asof_match, bucket_of, key_codes, point_in_time_join
from tests.unit.etl_pit.cases import merge_asof_reference, random_case, rows

S = 1000  # one second in the int-ms timestamps of these tests


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("full_feature_names", [False, True])
def test_random_cases_equal_the_merge_asof_reference(seed, full_feature_names):
    entities, tables = random_case(seed)
    got = point_in_time_join(entities, tables, full_feature_names=full_feature_names)
    assert rows(got) == merge_asof_reference(entities, tables, full_feature_names=full_feature_names)
    # the cases exercise what they claim: matches, misses and duplicates all occur
    name = "spend__amount" if full_feature_names else "amount"
    assert 0 < got[name].null_count < got.num_rows
    assert got.num_rows == entities.num_rows and got.select(entities.column_names).equals(entities)


def _spend(users, ts_ms, values, created=None):
    columns = {"user": users, "ts": ts_ms, "v": values}
    if created is not None:
        columns["created"] = pa.array(created, pa.int64())
    return pa.table(columns)


def _join(entities, features, **kwargs):
    table = FeatureTable("t", features, join_keys="user", timestamp_column="ts", features="v", created_column="created" if "created" in features.column_names else None, **kwargs)
    return point_in_time_join(pa.table(entities), table)["v"].to_pylist()


def test_ttl_edge_is_inclusive_and_one_ms_more_is_out():
    features = _spend([1, 2], [0, 0], [10.0, 20.0])
    entities = {"user": [1, 2], "event_timestamp": [10 * S, 10 * S + 1]}
    assert _join(entities, features, ttl_s=10) == [10.0, None]


def test_ttl_zero_or_none_means_no_limit():
    features = _spend([1], [0], [10.0])
    entities = {"user": [1], "event_timestamp": [10**9 * S]}
    assert _join(entities, features, ttl_s=0) == _join(entities, features, ttl_s=None) == [10.0]


def test_feature_at_the_entity_instant_counts_and_a_later_one_does_not():
    features = _spend([1, 1], [5 * S, 6 * S], [5.0, 6.0])
    entities = {"user": [1, 1, 1], "event_timestamp": [4 * S, 5 * S, 6 * S - 1]}
    assert _join(entities, features) == [None, 5.0, 5.0]


def test_ties_on_the_timestamp_go_to_the_latest_created_then_the_later_row():
    # same user and timestamp: created 2 beats 1 though it comes first; null created loses to any value
    features = _spend([1, 1, 1, 2, 2, 3, 3], [S] * 7, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], created=[2, 1, None, None, 0, 5, 5])
    entities = {"user": [1, 2, 3], "event_timestamp": [S, S, S]}
    assert _join(entities, features) == [1.0, 5.0, 7.0]  # user 3: full tie, the later row wins


def test_a_newer_timestamp_beats_a_later_created_one():
    features = _spend([1, 1], [S, 2 * S], [1.0, 2.0], created=[99, 0])
    assert _join({"user": [1], "event_timestamp": [3 * S]}, features) == [2.0]


def test_duplicate_entity_rows_stay_one_for_one_in_input_order():
    features = _spend([1, 2], [0, 0], [1.0, 2.0])
    entities = pa.table({"id": [5, 4, 3, 2, 1], "user": [2, 1, 2, 2, 1], "event_timestamp": [S, S, S, S, 0]})
    out = point_in_time_join(entities, FeatureTable("t", features, "user", "ts", "v"))
    assert out.column_names == ["id", "user", "event_timestamp", "v"]
    assert out["id"].to_pylist() == [5, 4, 3, 2, 1]
    assert out["v"].to_pylist() == [2.0, 1.0, 2.0, 2.0, 1.0]


def test_missing_entities_null_keys_and_null_timestamps_get_nulls():
    features = pa.table({"user": [1, None, 2], "ts": [0, 0, None], "v": [1.0, 9.0, 2.0]})
    entities = {"user": [1, 3, None, 1, 2], "event_timestamp": [S, S, S, None, S]}
    # user 2's only feature row has a null timestamp: ignored; a null entity key matches no null feature key
    assert _join(entities, features) == [1.0, None, None, None, None]


def test_several_tables_with_different_keys_and_full_feature_names():
    entities = pa.table({"user": [1, 1], "shop": ["a", "b"], "event_timestamp": [S, S]})
    by_user = pa.table({"user": [1], "ts": [0], "score": [0.5]})
    by_pair = pa.table({"user": [1, 1], "shop": ["b", "a"], "ts": [0, 0], "score": [7.0, 8.0]})
    tables = [FeatureTable("u", by_user, "user", "ts", "score"), FeatureTable("p", by_pair, ["user", "shop"], "ts", "score")]
    out = point_in_time_join(entities, tables, full_feature_names=True)
    assert out.column_names[-2:] == ["u__score", "p__score"]
    assert out["u__score"].to_pylist() == [0.5, 0.5] and out["p__score"].to_pylist() == [8.0, 7.0]
    with pytest.raises(PitJoinError, match="'score' already exists.*full_feature_names=True"):
        point_in_time_join(entities, tables)


def test_timestamp_kinds_compare_as_instants():
    base = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    ms = int(base.timestamp() * 1000)
    features = pa.table({"user": [1, 1], "ts": pa.array([base - dt.timedelta(days=1), base], pa.timestamp("s", tz="UTC")), "v": [1.0, 2.0]})
    paris = pa.array([base.replace(tzinfo=None)], pa.timestamp("us")).cast(pa.timestamp("us", tz="Europe/Paris"))
    for entity_ts, want in [
        (pa.array([ms]), 2.0),  # int ms
        (pa.array([ms - 1]), 1.0),
        (paris, 2.0),  # zone-aware: the same instant
        (pa.array([base.date()], pa.date32()), 2.0),  # midnight UTC
        (pa.array([base.replace(tzinfo=None) - dt.timedelta(microseconds=1)], pa.timestamp("us")), 1.0),  # naive = UTC
    ]:
        out = point_in_time_join(pa.table({"user": [1], "event_timestamp": entity_ts}), FeatureTable("t", features, "user", "ts", "v"))
        assert out["v"].to_pylist() == [want], entity_ts.type


def test_entity_key_types_are_cast_to_the_feature_side():
    features = pa.table({"user": pa.array([1], pa.int64()), "region": pa.array(["eu"], pa.large_string()), "ts": [0], "v": [1.0]})
    entities = pa.table({"user": pa.array([1], pa.int32()), "region": ["eu"], "event_timestamp": [0]})
    assert point_in_time_join(entities, FeatureTable("t", features, ["user", "region"], "ts", "v"))["v"].to_pylist() == [1.0]
    # integers meet as int64: an entity value too wide for the feature column's int16 simply misses
    narrow = pa.table({"user": pa.array([1], pa.int16()), "ts": [0], "v": [1.0]})
    wide = pa.table({"user": pa.array([1, 2**40], pa.int64()), "event_timestamp": [0, 0]})
    assert point_in_time_join(wide, FeatureTable("t", narrow, "user", "ts", "v"))["v"].to_pylist() == [1.0, None]


def test_large_and_sparse_integer_keys_and_far_apart_timestamps():
    big = 2**62
    far = 2**42  # ms: about 139 years either side of 1970
    features = pa.table({"user": [-big, big, 7], "ts": [-far, far, 0], "v": [1.0, 2.0, 3.0]})
    entities = pa.table({"user": [-big, big, 7, 8], "event_timestamp": [0, far, 1, 1]})
    assert point_in_time_join(entities, FeatureTable("t", features, "user", "ts", "v"))["v"].to_pylist() == [1.0, 2.0, 3.0, None]
    with pytest.raises(PitJoinError, match="entity column 'event_timestamp': a value is outside the years 1677-2262"):
        point_in_time_join(entities.set_column(1, "event_timestamp", pa.array([2**60] * 4)), FeatureTable("t", features, "user", "ts", "v"))


@pytest.mark.parametrize(
    ("entities", "table", "match"),
    [
        ({"user": [1]}, FeatureTable("t", _spend([1], [0], [1.0]), "user", "ts", "v"), "no timestamp column 'event_timestamp'"),
        ({"u": [1], "event_timestamp": [0]}, FeatureTable("t", _spend([1], [0], [1.0]), "user", "ts", "v"), "entity table has no join key column 'user'"),
        ({"user": [1], "event_timestamp": [0]}, FeatureTable("t", _spend([1], [0], [1.0]), "user", "ts", "nope"), "source has no column 'nope'"),
        ({"user": ["1"], "event_timestamp": [0]}, FeatureTable("t", _spend([1], [0], [1.0]), "user", "ts", "v"), "join key 'user'.*string.*int64"),
        ({"user": [1], "event_timestamp": [0.5]}, FeatureTable("t", _spend([1], [0], [1.0]), "user", "ts", "v"), "entity column 'event_timestamp'.*double"),
        ({"user": [1], "event_timestamp": [0], "v": [0.0]}, FeatureTable("t", _spend([1], [0], [1.0]), "user", "ts", "v"), "output column 'v' already exists"),
    ],
)
def test_setup_errors_name_the_culprit(entities, table, match):
    with pytest.raises(PitJoinError, match=match):
        point_in_time_join(pa.table(entities), table)


def test_definition_errors_name_the_culprit():
    spend = _spend([1], [0], [1.0])
    with pytest.raises(PitJoinError, match="feature table 't': ttl_s must be >= 0"):
        FeatureTable("t", spend, "user", "ts", "v", ttl_s=-1)
    with pytest.raises(PitJoinError, match="'user' is a key or timestamp column"):
        FeatureTable("t", spend, "user", "ts", ["v", "user"])
    with pytest.raises(PitJoinError, match="source must be a pyarrow.Table.*got dict"):
        FeatureTable("t", {"user": [1]}, "user", "ts", "v")
    with pytest.raises(PitJoinError, match="names must differ"):
        point_in_time_join(pa.table({"user": [1], "event_timestamp": [0]}), [FeatureTable("t", spend, "user", "ts", "v")] * 2)


def test_parquet_files_in_list_order_with_schema_evolution(tmp_path):
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"user": [1, 2], "ts": [0, 0], "v": [1.0, 2.0]}), first)  # before "w" was added
    pq.write_table(pa.table({"user": [1, 2], "ts": [0, 0], "v": [3.0, 4.0], "w": ["x", "y"]}), second)
    entities = pa.table({"user": [1, 2], "event_timestamp": [0, 0]})
    schema = pa.schema([("user", pa.int64()), ("ts", pa.int64()), ("v", pa.float64()), ("w", pa.string())])
    # full ties: the row from the later file wins
    out = point_in_time_join(entities, FeatureTable("t", ParquetFiles([str(first), str(second)], schema=schema), "user", "ts", ["v", "w"]))
    assert out["v"].to_pylist() == [3.0, 4.0] and out["w"].to_pylist() == ["x", "y"]
    out = point_in_time_join(entities, FeatureTable("t", [str(second), str(first)], "user", "ts", "v"))
    assert out["v"].to_pylist() == [1.0, 2.0]
    with pytest.raises(PitJoinError, match=r"a\.parquet' has no column 'w'"):
        point_in_time_join(entities, FeatureTable("t", [str(second), str(first)], "user", "ts", "w"))


def test_unreadable_parquet_file_is_named(tmp_path):
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(pa.table({"user": [1], "ts": [0], "v": [1.0]}), good)
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(PitJoinError, match="bad.parquet"):
        point_in_time_join(pa.table({"user": [1], "event_timestamp": [0]}), FeatureTable("t", [str(good), str(bad)], "user", "ts", "v"))
    with pytest.raises(PitJoinError, match="missing.parquet"):
        point_in_time_join(pa.table({"user": [1], "event_timestamp": [0]}), FeatureTable("t", [str(tmp_path / "missing.parquet")], "user", "ts", "v"))


def test_parquet_source_on_both_storage_kinds(storage_root):
    from fabric_ray.storage.fs import open_location

    location = open_location(storage_root.uri, storage_root.config)
    filesystem = location.arrow_filesystem()
    entities, tables = random_case(3)
    spend = tables[0].source
    paths = []
    filesystem.create_dir(location.join("features"), recursive=True)
    for i, start in enumerate(range(0, spend.num_rows, 400)):
        path = location.join("features", f"part-{i}.parquet")
        pq.write_table(spend.slice(start, 400), path, filesystem=filesystem)
        paths.append(path)
    from_files = FeatureTable("spend", ParquetFiles(paths, filesystem), "user", "ts", ["amount", "count"], created_column="created", ttl_s=10)
    assert point_in_time_join(entities, from_files).equals(point_in_time_join(entities, tables[0]))


# --- properties --------------------------------------------------------------------------------------------

_feature_rows = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.one_of(st.none(), st.integers(0, 8)), st.one_of(st.none(), st.integers(0, 2))),
    max_size=30,
)
_entity_rows = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.integers(0, 10))), max_size=20)


def _brute_force(entity_rows, feature_rows, ttl_s):
    """The rules, row by row: the candidate with the greatest (timestamp, created, position)."""
    out = []
    for key, ts in entity_rows:
        best = None
        for i, (f_key, f_ts, created) in enumerate(feature_rows):
            if key is None or ts is None or f_key != key or f_ts is None or f_ts > ts:
                continue
            if ttl_s and (ts - f_ts) * S > ttl_s * S:
                continue
            rank = (f_ts, -1 if created is None else created, i)
            best = rank if best is None or rank > best else best
        out.append(None if best is None else best[2])
    return out


@settings(max_examples=300, deadline=None)
@given(_entity_rows, _feature_rows, st.sampled_from([None, 0, 1, 3]))
def test_property_equals_brute_force(entity_rows, feature_rows, ttl_s):
    features = pa.table({
        "user": pa.array([r[0] for r in feature_rows], pa.int64()),
        "ts": pa.array([None if r[1] is None else r[1] * S for r in feature_rows], pa.int64()),
        "created": pa.array([r[2] for r in feature_rows], pa.int64()),
        "row": pa.array(range(len(feature_rows)), pa.int64()),
    })
    entities = pa.table({
        "user": pa.array([r[0] for r in entity_rows], pa.int64()),
        "event_timestamp": pa.array([None if r[1] is None else r[1] * S for r in entity_rows], pa.int64()),
    })
    out = point_in_time_join(entities, FeatureTable("t", features, "user", "ts", "row", created_column="created", ttl_s=ttl_s))
    assert out["row"].to_pylist() == _brute_force(entity_rows, feature_rows, ttl_s)
    assert out.select(["user", "event_timestamp"]).equals(entities)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.sampled_from(["a", "b", None])), min_size=1, max_size=40))
def test_property_key_codes_equal_exactly_when_keys_are_equal(pairs):
    half = len(pairs) // 2
    cols = [pa.chunked_array([pa.array([p[0] for p in part], pa.int64())]) for part in (pairs[:half], pairs[half:])]
    strs = [pa.chunked_array([pa.array([p[1] for p in part], pa.string())]) for part in (pairs[:half], pairs[half:])]
    e, f = key_codes([cols[0], strs[0]], [cols[1], strs[1]])
    codes = np.concatenate([e, f])
    for i, a in enumerate(pairs):
        if a[1] is None:  # a null in any key column: code -1, matching nothing
            assert codes[i] == -1
            continue
        for j, b in enumerate(pairs):
            if b[1] is not None:
                assert (codes[i] == codes[j]) == (a == b)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), max_size=50), st.integers(1, 17))
def test_property_buckets_are_in_range_and_type_independent(values, buckets):
    b64 = bucket_of([pa.array(values, pa.int64())], buckets)
    assert ((0 <= b64) & (b64 < buckets)).all()
    small = [v for v in values if -(2**31) <= v < 2**31]
    assert bucket_of([pa.array(small, pa.int32())], buckets).tolist() == bucket_of([pa.array(small, pa.int64())], buckets).tolist()
    assert bucket_of([pa.array([str(v) for v in values])], buckets).tolist() == bucket_of([pa.array([str(v) for v in values], pa.large_string())], buckets).tolist()


def test_bucket_of_is_stable_across_processes():
    # fixed expectations: any change to the hash would silently re-bucket stored data between versions
    assert bucket_of([pa.array([0, 1, 2, 3, 4, 5, 6, 7])], 4).tolist() == EXPECTED_INT_BUCKETS
    assert bucket_of([pa.array(["eu", "us", "ap"]), pa.array([1, 2, 3])], 8).tolist() == EXPECTED_PAIR_BUCKETS


EXPECTED_INT_BUCKETS = [3, 2, 0, 3, 3, 1, 1, 1]
EXPECTED_PAIR_BUCKETS = [1, 5, 5]


def test_asof_match_ignores_code_minus_one_entities():
    got = asof_match(np.array([-1, 0]), np.array([5, 5]), np.array([0]), np.array([1]), None, None)
    assert got.tolist() == [-1, 0]


def test_storage_dataset_source_with_schema_evolution(storage_root):
    from fabric_ray.storage import Dataset, DatasetSpec, HashBuckets, open_location

    entities, tables = random_case(11)
    spend = tables[0].source
    spec = DatasetSpec("spend", spend.schema, HashBuckets("user", 4), key=("user",))
    dataset = Dataset.create(open_location(storage_root.uri, storage_root.config), spec)
    dataset.write(spend.slice(0, 700))
    dataset.evolve(spend.schema.append(pa.field("note", pa.string())))
    dataset.write(spend.slice(700).append_column("note", pa.array(["x"] * (spend.num_rows - 700))))
    table = FeatureTable("spend", dataset, "user", "ts", ["amount", "count", "note"], created_column="created", ttl_s=10)
    out = point_in_time_join(entities, table)
    # Partitioning by the key keeps each user's rows in write order, so even full ties resolve as
    # they do over the original table.
    assert out.select(["amount", "count"]).equals(point_in_time_join(entities, tables[0]).select(["amount", "count"]))
    # rows from files written before "note" existed read it as null; the others carry "x"
    assert 0 < out["note"].null_count < out.num_rows and set(out["note"].drop_null().to_pylist()) == {"x"}
