"""Team policy files: the typed model, the YAML loader with strict validation, the JSON Schema."""

from autoscaler.policy.loader import (
    LoadResult,
    PolicyError,
    load_policies,
    load_policy_file,
    policy_to_document,
)
from autoscaler.policy.model import ScalingPolicy

__all__ = ["LoadResult", "PolicyError", "ScalingPolicy", "load_policies", "load_policy_file", "policy_to_document"]
