"""Batch ETL on Ray Data: pipelines, quality gates, point-in-time training sets."""

from fabric_ray.etl.checks import Check, CheckError, Drift, Freshness, Gate, GateAccumulator, RowCount, RuleCheck, parse_check, parse_checks
from fabric_ray.etl.gate_report import CheckResult, GateReport
from fabric_ray.etl.profile import ColumnProfile, Profile, ProfileBuilder, ProfileError

__all__ = [
    "Check",
    "CheckError",
    "CheckResult",
    "ColumnProfile",
    "Drift",
    "Freshness",
    "Gate",
    "GateAccumulator",
    "GateReport",
    "Profile",
    "ProfileBuilder",
    "ProfileError",
    "RowCount",
    "RuleCheck",
    "parse_check",
    "parse_checks",
]
