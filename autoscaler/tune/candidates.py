"""Candidate policies: the team's effective policy with some numbers changed, validated by the loader.

A candidate is never a hand-made ``ScalingPolicy``: its document (the effective document of the
policy, :func:`autoscaler.policy.policy_to_document`, with the tuned values set) goes through the same
:func:`autoscaler.policy.load_policy_file` as every policy file, so a candidate that breaks a
cross-field rule (``warmPool.maxSpare`` below ``minSpare``, a quantity the HPA cannot read) is
rejected with the loader's message and never simulated.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from autoscaler.core.policy import ScalingPolicy
from autoscaler.errors import PolicyError
from autoscaler.policy import load_policy_file, policy_to_document
from autoscaler.tune.space import Parameter, TuningError, TuningSpace, resolve, step_into, with_values

__all__ = ["CandidateBuilder", "Values"]

Values = Mapping[str, float | int | None]  # parameter path -> value (None: unset, for a reverted absent field)


class CandidateBuilder:
    """Builds validated candidates of one base policy over one tuning space."""

    def __init__(self, policy: ScalingPolicy, space: TuningSpace) -> None:
        self.policy = policy
        self.space = space
        self.document = policy_to_document(policy)
        self.paths: dict[str, tuple[str | int, ...]] = {}
        self.current: dict[str, float | int | None] = {}
        for parameter in space.parameters:
            concrete, value = resolve(self.document, parameter)
            self.paths[parameter.path] = concrete
            # An integer field reads back as an int (a window of 300.0 s is not an integer to the loader).
            self.current[parameter.path] = int(value) if value is not None and parameter.integer and \
                value.is_integer() else value
        self._dir = tempfile.TemporaryDirectory(prefix="tune-candidates-")
        self._count = 0

    def close(self) -> None:
        self._dir.cleanup()

    def __enter__(self) -> CandidateBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def document_with(self, values: Values) -> dict[str, Any]:
        doc = with_values(self.document, {self.paths[k]: v for k, v in values.items() if v is not None})
        for key, value in values.items():
            if value is None:
                _delete(doc, self.paths[key])
        return doc

    def build(self, values: Values) -> ScalingPolicy:
        """The candidate with ``values`` set; :class:`~autoscaler.errors.PolicyError` if the loader refuses it."""
        self._count += 1
        path = Path(self._dir.name) / f"candidate-{self._count}.yaml"
        path.write_text(yaml.safe_dump(self.document_with(values), sort_keys=False), encoding="utf-8")
        try:
            candidate = load_policy_file(path)
        finally:
            path.unlink(missing_ok=True)
        return replace(candidate, source=self.policy.source)

    def current_values(self) -> dict[str, float | int | None]:
        return dict(self.current)

    def check(self) -> None:
        """Every parameter can yield a valid policy at one end of its range at least (a path the
        loader does not know, or a range it always refuses, is an error naming the parameter)."""
        for parameter in self.space.parameters:
            problems = []
            for end in (parameter.low, parameter.high):
                try:
                    self.build({parameter.path: parameter.snap(end)})
                    break
                except PolicyError as error:
                    problems.append(str(error).split("\n")[0].split(": ", 1)[-1])
            else:
                raise TuningError(f"{parameter.path} = {_show(parameter)}: the policy is invalid at both ends of "
                                  f"the range: {problems[0]}")


def _show(parameter: Parameter) -> str:
    return f"{parameter.low:g}:{parameter.high:g}"


def _delete(doc: Any, path: tuple[str | int, ...]) -> None:
    node = doc
    for part in path[:-1]:
        node = step_into(node, part)
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)
