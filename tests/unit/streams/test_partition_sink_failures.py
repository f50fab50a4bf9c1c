"""A failing sink must neither lose a batch nor count it twice."""

import math

import pytest

from fabric_ray.demo.payments import expected_features, generate_events, payments_pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.testing import CollectingSink, MemorySource


class FlakySink(CollectingSink):
    """Fails every ``every``-th call of write/send, then works."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            raise OSError("sink unavailable")

    def write(self, features):
        self._maybe_fail()
        super().write(features)

    def send(self, letters):
        self._maybe_fail()
        super().send(letters)


@pytest.mark.parametrize("fail_features,fail_dlq", [(True, False), (False, True), (True, True)])
def test_failing_sinks_lose_nothing_and_count_once(fail_features, fail_dlq):
    events = generate_events(20_000, users=100, bad_fraction=0.01, seed=3)
    parts = {0: [], 1: []}  # keyed by user, as producers do: state is per partition
    for key, payload in zip(events.keys, events.payloads):
        parts[int(key) % 2].append(payload)
    source = MemorySource("payments", parts)
    features = FlakySink(3) if fail_features else CollectingSink()
    dead = FlakySink(2) if fail_dlq else CollectingSink()
    sinks = {"features": features, "archive": CollectingSink()}
    proc = PipelineProcessor(source, payments_pipeline(), sinks, dead, batch_size=1000, poll_timeout_s=0, checkpoint_interval_s=0)
    failures = 0
    while True:
        try:
            if proc.next_batch() == 0:
                break
        except OSError:
            failures += 1
    assert failures > 0
    assert proc.stats.processed == events.table.num_rows
    assert proc.stats.dead_lettered == events.bad == len(dead.items)
    assert sorted(d.offset for d in dead.items if d.partition == 0) == sorted(
        set(d.offset for d in dead.items if d.partition == 0)
    ), "a dead letter was sent twice"
    assert source.committed == {0: len(parts[0]), 1: len(parts[1])}
    expected = expected_features(events.table)
    served = features.latest("user_id")
    assert served.keys() == expected.keys()
    for user, want in expected.items():
        assert served[user]["txn_count"] == want["txn_count"]
        assert math.isclose(served[user]["amount_sum"], want["amount_sum"], rel_tol=1e-9)
        assert served[user]["txn_count_1m"] == want["txn_count_1m"]
