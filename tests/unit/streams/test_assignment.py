"""fabric_ray.streams.assignment: partition ownership and the progress roll-up."""

from __future__ import annotations

import pytest

from fabric_ray.streams.assignment import OwnerStatus, assign_partitions, owner_name, summarize


@pytest.mark.parametrize(
    ("partitions", "per_actor", "expected"),
    [
        (range(5), 2, [(0, 1), (2, 3), (4,)]),
        (range(4), 1, [(0,), (1,), (2,), (3,)]),
        (range(4), 4, [(0, 1, 2, 3)]),
        (range(3), 10, [(0, 1, 2)]),
        ([], 3, []),
        ([5, 1, 3, 1, 5], 2, [(1, 3), (5,)]),  # sorted, duplicates dropped
        (["2", "0"], 1, [(0,), (2,)]),
    ],
)
def test_assign_partitions(partitions, per_actor, expected):
    assert assign_partitions(partitions, per_actor) == expected


def test_assign_partitions_covers_every_partition_exactly_once():
    groups = assign_partitions(range(37), 4)
    flat = [p for g in groups for p in g]
    assert flat == list(range(37))
    assert all(1 <= len(g) <= 4 for g in groups)


@pytest.mark.parametrize("per_actor", [0, -1])
def test_assign_partitions_rejects_non_positive_group_size(per_actor):
    with pytest.raises(ValueError, match=f"partitions_per_actor must be >= 1; got {per_actor}"):
        assign_partitions(range(3), per_actor)


def test_owner_name_is_stable_and_distinct():
    assert owner_name("payments", (0, 1)) == "partition:payments:0-1"
    assert owner_name("payments", [7]) == "partition:payments:7"
    assert owner_name("a", (1, 2)) != owner_name("a", (12,))


def test_owner_status_from_report_converts_types():
    report = {
        "state": "running",
        "processed": "10",
        "dead_lettered": 2,
        "lag": {"0": "3", 1: 0},
        "next_offsets": {"0": "12"},
        "throughput_eps": "1.5",
        "restarts": 1,
        "last_error": "boom",
    }
    s = OwnerStatus.from_report("partition:t:0-1", [0, 1], report)
    assert s.name == "partition:t:0-1"
    assert s.partitions == (0, 1)
    assert s.processed == 10 and s.dead_lettered == 2
    assert s.lag == {0: 3, 1: 0}
    assert s.next_offsets == {0: 12}
    assert s.throughput_eps == 1.5 and s.restarts == 1 and s.last_error == "boom"


def test_owner_status_from_empty_report_has_defaults():
    s = OwnerStatus.from_report("x", (4,), {})
    assert (s.state, s.processed, s.dead_lettered, s.lag, s.next_offsets, s.restarts, s.last_error) == (
        "running", 0, 0, {}, {}, 0, None
    )


def test_summarize_totals():
    owners = [
        OwnerStatus("a", (0, 1), processed=10, dead_lettered=1, lag={0: 2, 1: 3}, throughput_eps=5.0, restarts=1, reasons={"late event": 1}),
        OwnerStatus("b", (2,), processed=7, dead_lettered=0, offset_gaps=4, lag={2: 0}, throughput_eps=2.5, outputs_suppressed=3),
    ]
    s = summarize(owners)
    assert s == {
        "owners": 2,
        "partitions": 3,
        "processed": 17,
        "dead_lettered": 1,
        "offset_gaps": 4,
        "lag": 5,
        "throughput_eps": 7.5,
        "restarts": 1,
        "reasons": {"late event": 1},
        "outputs_suppressed": 3,
        "letters_suppressed": 0,
        "stages": {},
        "caught_up": False,
    }


def test_new_partitions_get_new_owners_and_old_owners_keep_theirs():
    from fabric_ray.streams.assignment import assign_new_partitions

    owned = assign_partitions(range(3), 2)  # (0, 1), (2,)
    new = assign_new_partitions(owned, 6, 2)
    assert new == [(3, 4), (5,)]
    held = [p for g in owned + new for p in g]
    assert sorted(held) == list(range(6))  # each partition exactly once
    assert assign_new_partitions(owned, 3, 2) == []


def test_caught_up_when_every_owner_reports_zero_lag():
    owners = [OwnerStatus("a", (0,), lag={0: 0}), OwnerStatus("b", (1,), lag={1: 0})]
    assert summarize(owners)["caught_up"] is True


def test_not_caught_up_with_no_owners():
    assert summarize([])["caught_up"] is False
    assert summarize([])["owners"] == 0


def test_not_caught_up_when_an_owner_did_not_report_lag():
    owners = [OwnerStatus("a", (0,), lag={0: 0}), OwnerStatus("b", (1,), state="unreachable")]
    assert summarize(owners)["caught_up"] is False


def test_not_caught_up_when_an_owner_is_not_running():
    owners = [OwnerStatus("a", (0,), lag={0: 0}), OwnerStatus("b", (1,), state="failed", lag={1: 0})]
    assert summarize(owners)["caught_up"] is False
