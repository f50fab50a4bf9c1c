"""Feast definitions of the demo domain (card payments): what fabric_ray serves, declared for Feast.

Entities ``user`` (``user_id``, int64) and ``merchant`` (``merchant_id``, int64), and three views:

* ``user_payments``: the stream engine's running totals and 1-minute window aggregates, fed
  through the push source ``user_payments_push``, no TTL. Names and types match
  ``fabric_ray.demo.payments.USER_PAYMENTS`` (``tests/integration/test_feast_remote.py`` checks
  it). Its file source ``data/user_payments.parquet`` is only for Feast itself as a benchmark
  peer (``bench/spine.py`` writes it in a copy of this repo); the fabric never materializes this
  view (tag ``materialize: "false"``), the stream writes it.
* ``user_daily`` and ``merchant_daily``: one row per entity and day, computed in batch
  (``fabric features demo-data`` or any job of yours) and written as Parquet under
  ``<feature data root>/features/<view>/``; TTL 2 days. Push sources ``user_daily_push`` and
  ``merchant_daily_push`` let a job send rows straight to the online store too.

And one feature service, ``fraud_model``: every feature the fraud model reads.

Where the batch data lives: ``$FABRIC_FEATURE_DATA`` (the fabric sets it to its storage root,
e.g. ``/var/fabric/storage`` or ``s3://bucket/prefix``, when it loads this file), else ``data``
(relative paths resolve against this folder, so plain ``feast apply`` works here too). With an
S3 endpoint other than AWS, ``$FABRIC_FEATURE_DATA_S3_ENDPOINT`` names it (Feast's
``s3_endpoint_override``). Reading the environment is the one thing this file does besides
declaring: no I/O at import time.
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64

DATA_ROOT = os.environ.get("FABRIC_FEATURE_DATA", "data").rstrip("/") or "/"
S3_ENDPOINT = os.environ.get("FABRIC_FEATURE_DATA_S3_ENDPOINT") or None
DAILY_TTL = timedelta(days=2)  # a day's values stay valid through the next full day


def _daily_source(view: str) -> FileSource:
    """Parquet files of one batch view: columns key, features, ``event_ts``, ``created_ts``."""
    return FileSource(
        name=f"{view}_source",
        path=f"{DATA_ROOT}/features/{view}",
        timestamp_field="event_ts",
        created_timestamp_column="created_ts",
        s3_endpoint_override=S3_ENDPOINT if DATA_ROOT.startswith("s3://") else None,
        description=f"Daily rows of {view}: event_ts is the end of the day (midnight UTC after it).",
    )


# -- entities -------------------------------------------------------------------------------------
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A card holder of the payments demo.",
)

merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="A merchant that accepts card payments.",
)

# -- streaming: the stream engine's aggregates ---------------------------------------------------
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
    tags={"product": "payments", "served_by": "fabric_ray", "materialize": "false"},
)

# -- batch: daily aggregates over Parquet written by the fabric ----------------------------------
user_daily_source = _daily_source("user_daily")
user_daily_push = PushSource(name="user_daily_push", batch_source=user_daily_source)

user_daily = FeatureView(
    name="user_daily",
    entities=[user],
    ttl=DAILY_TTL,
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="txn_count_1d", dtype=Int64, description="Payments of the user that day."),
        Field(name="amount_sum_1d", dtype=Float64, description="Sum of their amounts that day."),
        Field(name="large_txn_count_1d", dtype=Int64, description="Payments of 100 or more that day."),
    ],
    source=user_daily_push,
    online=True,
    tags={"product": "payments", "served_by": "fabric_ray"},
)

merchant_daily_source = _daily_source("merchant_daily")
merchant_daily_push = PushSource(name="merchant_daily_push", batch_source=merchant_daily_source)

merchant_daily = FeatureView(
    name="merchant_daily",
    entities=[merchant],
    ttl=DAILY_TTL,
    schema=[
        Field(name="merchant_id", dtype=Int64),
        Field(name="txn_count_1d", dtype=Int64, description="Payments at the merchant that day."),
        Field(name="amount_mean_1d", dtype=Float64, description="Mean payment amount that day."),
        Field(name="distinct_users_1d", dtype=Int64, description="Distinct paying users that day."),
    ],
    source=merchant_daily_push,
    online=True,
    tags={"product": "payments", "served_by": "fabric_ray"},
)

# -- what the fraud model reads -------------------------------------------------------------------
fraud_model = FeatureService(
    name="fraud_model",
    features=[user_payments, user_daily, merchant_daily],
    description="Every feature of the fraud model: live user totals, the user's and the merchant's day.",
    tags={"model": "fraud"},
)
