"""Feast definitions of the demo data product: the same feature view that fabric_ray serves.

The names and types match ``fabric_ray.demo.payments.USER_PAYMENTS`` (entity ``user_id``
int64; ``txn_count`` int64, ``amount_sum`` float64, ``txn_count_1m`` int64,
``amount_sum_1m`` float64), so a Feast client can read the view from Feast's own stores or,
with ``online_store: {type: remote, path: <fabric endpoint>}``, from the fabric's HTTP server.

``data/user_payments.parquet`` holds one row per user and update: ``user_id``, the four
features and ``event_ts`` (a UTC timestamp, the user's latest event). It is not kept in git:
``bench/spine.py`` writes it, and nothing here reads it at import time.
"""

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A card holder of the payments demo.",
)

user_payments_source = FileSource(
    name="user_payments_source",
    path="data/user_payments.parquet",  # relative paths resolve against the repo folder
    timestamp_field="event_ts",
)

user_payments_push = PushSource(
    name="user_payments_push",
    batch_source=user_payments_source,
)

user_payments = FeatureView(
    name="user_payments",
    entities=[user],
    # No ttl: the features are running totals, valid however old the latest event is
    # (fabric_ray serves them without a max age too).
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="txn_count", dtype=Int64, description="Payments of the user, all time."),
        Field(name="amount_sum", dtype=Float64, description="Sum of their amounts, all time."),
        Field(name="txn_count_1m", dtype=Int64, description="Payments in the 1-minute window of the latest event."),
        Field(name="amount_sum_1m", dtype=Float64, description="Sum of amounts in that window."),
    ],
    source=user_payments_push,
    online=True,
    tags={"product": "payments", "served_by": "fabric_ray"},
)
