"""Team policy files: the YAML loader with strict validation and the JSON Schema. The typed model they
produce lives with the core (:mod:`autoscaler.core.policy`)."""

from autoscaler.core.policy import ScalingPolicy
from autoscaler.errors import PolicyError
from autoscaler.policy.loader import (
    LoadResult,
    PolicyProblem,
    load_policies,
    load_policy_file,
    policy_to_document,
)

__all__ = [
    "LoadResult",
    "PolicyError",
    "PolicyProblem",
    "ScalingPolicy",
    "load_policies",
    "load_policy_file",
    "policy_to_document",
]
