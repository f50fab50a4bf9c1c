"""Batch ETL on Ray Data: pipelines, quality gates, point-in-time training sets."""

from fabric_ray.etl.checks import Check, CheckError, Drift, Freshness, Gate, GateAccumulator, RowCount, RuleCheck, parse_check, parse_checks
from fabric_ray.etl.gate_report import CheckResult, GateReport
from fabric_ray.etl.pipeline import EtlPipeline, EtlPipelineError, ReadStep, TransformStep, WriteStep, load_pipeline
from fabric_ray.etl.pit import FeatureTable, ParquetFiles, PitJoinError, point_in_time_join
from fabric_ray.etl.pit_ray import point_in_time_join_ray
from fabric_ray.etl.profile import ColumnProfile, Profile, ProfileBuilder, ProfileError
from fabric_ray.etl.runner import run_etl
from fabric_ray.etl.runs import EtlRunStore, RunRecord

__all__ = [
    "EtlPipeline",
    "EtlPipelineError",
    "EtlRunStore",
    "FeatureTable",
    "ParquetFiles",
    "PitJoinError",
    "ReadStep",
    "RunRecord",
    "TransformStep",
    "WriteStep",
    "load_pipeline",
    "point_in_time_join",
    "point_in_time_join_ray",
    "run_etl",
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
