"""The demo domain: card payments, their features, and a deterministic event generator.

Events are JSON objects::

    {"event_id": "evt-7-000042", "user_id": 1234, "merchant_id": 77, "amount": 12.5,
     "currency": "EUR", "card_number": "4000123412341234", "email": "user1234@example.com",
     "event_ts": 1795660000000}

``event_ts`` is milliseconds since the epoch. ``card_number`` and ``email`` are personal data
(masked by the governance layer, later). Messages are keyed by ``user_id`` so that all events of
a user land in one partition.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pyarrow as pa

from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.governance.products import DataProduct, load_products
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.aggregates import RunningTotals
from fabric_ray.streams.pipeline import Pipeline

__all__ = [
    "payments_pipeline",
    "payments_product",
    "PAYMENTS_SCHEMA",
    "PAYMENTS_DECODER",
    "FEATURE_NAMES",
    "USER",
    "USER_PAYMENTS",
    "GeneratedEvents",
    "expected_features",
    "generate_events",
]

PAYMENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("merchant_id", pa.int64()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("card_number", pa.string()),
        ("email", pa.string()),
        ("event_ts", pa.int64()),
    ]
)
REQUIRED_FIELDS = ("event_id", "user_id", "amount", "event_ts")
WINDOW_MS = 60_000

USER = Entity("user", join_key="user_id", dtype="int64")
USER_PAYMENTS = FeatureView(
    "user_payments",
    USER,
    (
        Feature("txn_count", "int64"),
        Feature("amount_sum", "float64"),
        Feature("txn_count_1m", "int64"),
        Feature("amount_sum_1m", "float64"),
    ),
)

PAYMENTS_DECODER = JsonDecoder(PAYMENTS_SCHEMA, required=REQUIRED_FIELDS)
# Aggregate column of RunningTotals -> feature name of USER_PAYMENTS.
FEATURE_NAMES = {
    "key": "user_id",
    "count": "txn_count",
    "sum": "amount_sum",
    "window_count": "txn_count_1m",
    "window_sum": "amount_sum_1m",
    "last_event_ms": "event_ts_ms",
}



PRODUCTS_DIR = Path(__file__).parent / "products"


@functools.lru_cache(maxsize=1)
def payments_product() -> DataProduct:
    """The ``payments`` data product declared in ``fabric_ray/demo/products/payments.yaml``.

    Example:
        >>> payments_product().subject, payments_product().required
        ('payments-value', ('event_id', 'user_id', 'amount', 'event_ts'))
    """
    (product,) = load_products(PRODUCTS_DIR / "payments.yaml")
    return product


def payments_pipeline(
    topic: str = "payments",
    dead_letter_topic: str = "payments.dlq",
    window_ms: int = WINDOW_MS,
    consumer_group: str = "fabric-payments",
) -> Pipeline:
    """The demo stream: JSON payments in, checked against the ``payments`` data product's contract,
    archived to Parquet, ``user_payments`` features into the cache shards.

    The pipeline is named after its topic.

    Example:
        >>> print(payments_pipeline().describe())  # doctest: +NORMALIZE_WHITESPACE
        pipeline 'payments'
          1. source 'payments'            -> [raw messages]
          2. decode                       -> [event_id, user_id, merchant_id, amount, currency, card_number, email, event_ts]
          3. validate 'contract'          -> [event_id, user_id, merchant_id, amount, currency, card_number, email, event_ts]
          4. sink 'archive'               -> [event_id, user_id, merchant_id, amount, currency, card_number, email, event_ts]
          5. aggregate 'user_totals'      -> [user_id, txn_count, amount_sum, txn_count_1m, amount_sum_1m, event_ts_ms]
          6. sink 'features'              -> [user_id, txn_count, amount_sum, txn_count_1m, amount_sum_1m, event_ts_ms]
    """
    totals = RunningTotals(
        key="user_id",
        value="amount",
        time="event_ts",
        window_ms=window_ms,
        output_names=FEATURE_NAMES,
    )
    return (
        Pipeline(topic, dead_letter_topic=dead_letter_topic, consumer_group=consumer_group)
        .source(topic)
        .decode(PAYMENTS_DECODER)
        .validate(payments_product(), name="contract")
        .sink("archive", to="archive", time_column="event_ts")
        .aggregate(totals, name="user_totals")
        .sink("features", to="cache", feature_view=USER_PAYMENTS)
    )


_CURRENCIES = np.array(["EUR", "USD", "GBP", "CHF"])
_BAD_KINDS = ("truncated", "missing_user", "amount_text", "not_object")


@dataclass(frozen=True)
class GeneratedEvents:
    """A batch of generated events: the good ones as a table, and every payload as sent.

    Attributes:
        table: the valid events, columns of :data:`PAYMENTS_SCHEMA`.
        keys: message key per payload.
        payloads: every message as produced, good and bad, in order.
        bad: number of payloads that are deliberately invalid.
    """

    table: pa.Table
    keys: list[bytes]
    payloads: list[bytes]
    bad: int

    def __len__(self) -> int:
        return len(self.payloads)


def generate_events(
    n: int,
    *,
    users: int = 10_000,
    seed: int = 7,
    start_ms: int = 1_795_660_000_000,
    mean_gap_ms: float = 10.0,
    bad_fraction: float = 0.001,
) -> GeneratedEvents:
    """Generate ``n`` payment events, the same ones for the same arguments.

    Args:
        n: number of messages.
        users: number of distinct users (ids ``1..users``, skewed towards small ids).
        seed: random seed.
        start_ms: event time of the first event.
        mean_gap_ms: mean time between events.
        bad_fraction: share of messages that are deliberately malformed or invalid, to
            exercise the dead-letter path (truncated JSON, no ``user_id``, text ``amount``,
            a JSON array).

    Example:
        >>> ev = generate_events(1000, users=10, bad_fraction=0.01)
        >>> len(ev), ev.bad, ev.table.num_rows
        (1000, 10, 990)
    """
    if n < 0 or users < 1 or not 0 <= bad_fraction < 1:
        raise ValueError(f"need n >= 0, users >= 1, 0 <= bad_fraction < 1; got {n}, {users}, {bad_fraction}")
    rng = np.random.default_rng(seed)
    user_id = (rng.zipf(1.3, n) - 1) % users + 1
    merchant_id = rng.integers(1, 500, n)
    amount = np.round(rng.gamma(2.0, 25.0, n) + 0.01, 2)
    currency = _CURRENCIES[rng.integers(0, len(_CURRENCIES), n)]
    card = rng.integers(10**15, 10**16 - 1, n, dtype=np.int64)
    event_ts = start_ms + np.cumsum(rng.exponential(mean_gap_ms, n)).astype(np.int64)
    # Shuffle a little so that event time is not strictly increasing within a partition.
    event_ts = event_ts + rng.integers(-500, 500, n)
    bad = np.zeros(n, dtype=bool)
    n_bad = int(round(n * bad_fraction))
    if n_bad:
        bad[rng.choice(n, n_bad, replace=False)] = True
    payloads: list[bytes] = []
    keys: list[bytes] = []
    kinds = iter(_BAD_KINDS * (n_bad // len(_BAD_KINDS) + 1))
    for i in range(n):
        event = {
            "event_id": f"evt-{seed}-{i:08d}",
            "user_id": int(user_id[i]),
            "merchant_id": int(merchant_id[i]),
            "amount": float(amount[i]),
            "currency": str(currency[i]),
            "card_number": str(card[i]),
            "email": f"user{user_id[i]}@example.com",
            "event_ts": int(event_ts[i]),
        }
        keys.append(str(event["user_id"]).encode())
        if bad[i]:
            payloads.append(_corrupt(event, next(kinds)))
        else:
            payloads.append(json.dumps(event, separators=(",", ":")).encode())
    good = ~bad
    table = pa.table(
        {
            "event_id": [f"evt-{seed}-{i:08d}" for i in np.flatnonzero(good)],
            "user_id": user_id[good].astype(np.int64),
            "merchant_id": merchant_id[good].astype(np.int64),
            "amount": amount[good],
            "currency": currency[good],
            "card_number": card[good].astype(str),
            "email": [f"user{u}@example.com" for u in user_id[good]],
            "event_ts": event_ts[good],
        },
        schema=PAYMENTS_SCHEMA,
    )
    return GeneratedEvents(table=table, keys=keys, payloads=payloads, bad=n_bad)


def _corrupt(event: dict, kind: str) -> bytes:
    if kind == "truncated":
        return json.dumps(event).encode()[:20]
    if kind == "missing_user":
        return json.dumps({k: v for k, v in event.items() if k != "user_id"}).encode()
    if kind == "amount_text":
        return json.dumps({**event, "amount": "twelve"}).encode()
    return json.dumps([event]).encode()


def expected_features(events: pa.Table, window_ms: int = WINDOW_MS) -> dict[int, dict[str, float]]:
    """Compute the features straight from the events, independently of the stream code.

    Returns:
        ``{user_id: {"txn_count", "amount_sum", "txn_count_1m", "amount_sum_1m"}}``, the window
        features being those of the window holding the user's latest event.
    """
    df = events.select(["user_id", "amount", "event_ts"]).to_pandas()
    df["window"] = df["event_ts"] // window_ms
    totals = df.groupby("user_id")["amount"].agg(["count", "sum"])
    latest = df.groupby("user_id")["window"].transform("max")
    in_latest = df[df["window"] == latest].groupby("user_id")["amount"].agg(["count", "sum"])
    out: dict[int, dict[str, float]] = {}
    for uid, row in totals.iterrows():
        w = in_latest.loc[uid]
        out[int(uid)] = {
            "txn_count": int(row["count"]),
            "amount_sum": float(row["sum"]),
            "txn_count_1m": int(w["count"]),
            "amount_sum_1m": float(w["sum"]),
        }
    return out
