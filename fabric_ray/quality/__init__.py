"""Data quality: the rule vocabulary shared by data contracts and ETL quality gates.

Plain Python and Arrow, no Ray and no I/O. See :mod:`fabric_ray.quality.rules`.
"""

from fabric_ray.quality.rules import Between, InSet, NotNull, Regex, Rule, RuleError, Unique, parse_rule, parse_rules

__all__ = ["Between", "InSet", "NotNull", "Regex", "Rule", "RuleError", "Unique", "parse_rule", "parse_rules"]
