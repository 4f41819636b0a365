"""Policies for the service: read from a directory (a mounted ConfigMap), reloaded when it changes.

* Change detection polls a fingerprint of the YAML files (resolved through symlinks), so kubelet's
  atomic ``..data`` symlink swap is seen like any other change.
* Per file, all or nothing: a file with any error keeps the last good version of *all* its policies,
  and its errors are reported; nothing is half-applied. A new file with errors contributes nothing.
* A namespace allowlist, when given, drops policies outside it (reported as errors).
* One owner per target: of two policies on one target, the one running keeps it, whichever file a new
  claim comes from (then the first by file path and position); the other is refused, reported as an
  error and in :attr:`ReloadResult.conflicts` (the controller turns each into an Event and a counter).
* :meth:`PolicyDirectory.reload` parses files: call it off the event loop (the controller uses a thread).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.policy import PolicyProblem, ScalingPolicy, load_policies
from autoscaler.policy.loader import TargetConflict, TargetKey, describe_target, target_identity
from autoscaler.policy.schema import NO_VALUE

__all__ = ["PolicyDirectory", "ReloadResult", "TargetConflict"]

log = logging.getLogger("autoscaler.policies")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    changed: bool
    policies: tuple[ScalingPolicy, ...]
    errors: tuple[PolicyProblem, ...] = ()
    kept_stale: tuple[str, ...] = field(default_factory=tuple)  # files whose last good version is in use
    conflicts: tuple[TargetConflict, ...] = ()  # valid policies refused: their target has another policy


def _file_of(policy: ScalingPolicy) -> str:
    return policy.source.rsplit(":", 1)[0]


def _source_order(policy: ScalingPolicy) -> tuple[tuple[str, ...], int]:
    file, _, line = policy.source.rpartition(":")
    return Path(file).parts, int(line) if line.isdigit() else 0


class PolicyDirectory:
    def __init__(self, root: str | os.PathLike[str], *, namespaces: Sequence[str] = ()) -> None:
        self.root = Path(root)
        self.namespaces = frozenset(namespaces)
        self._fingerprint: tuple[tuple[str, str, int, int], ...] | None = None
        self._good: dict[str, tuple[ScalingPolicy, ...]] = {}
        self.current: tuple[ScalingPolicy, ...] = ()
        self.errors: tuple[PolicyProblem, ...] = ()
        self.conflicts: tuple[TargetConflict, ...] = ()

    def _scan(self) -> tuple[tuple[str, str, int, int], ...]:
        entries = []
        if not self.root.is_dir():
            return ()
        for directory, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.endswith((".yaml", ".yml")):
                    continue
                path = os.path.join(directory, name)
                try:
                    real = os.path.realpath(path)
                    st = os.stat(real)
                except OSError:
                    continue
                entries.append((path, real, st.st_mtime_ns, st.st_size))
        return tuple(entries)

    def reload(self, *, force: bool = False) -> ReloadResult:
        fingerprint = self._scan()
        if not force and fingerprint == self._fingerprint:
            return ReloadResult(False, self.current, self.errors, conflicts=self.conflicts)
        self._fingerprint = fingerprint
        owners = {target_identity(p): p.key for p in self.current}  # a running policy keeps its target
        result = load_policies([self.root], owners=owners) if self.root.is_dir() else None
        if result is None:
            error = PolicyProblem(str(self.root), None, "", None, "policy directory does not exist")
            self.errors = (error,)
            log.error("%s", error)
            return ReloadResult(True, self.current, self.errors, conflicts=self.conflicts)
        by_file = result.by_file()
        bad_files = set(result.failed_files)
        errors = list(result.errors)
        good: dict[str, tuple[ScalingPolicy, ...]] = {}
        kept: list[str] = []
        for file in result.files:
            if file in bad_files:
                if file in self._good:
                    good[file] = self._good[file]
                    kept.append(file)
                continue
            good[file] = tuple(by_file.get(file, []))
        policies: list[ScalingPolicy] = []
        seen: set[str] = set()
        for file in sorted(good):
            for policy in good[file]:
                if self.namespaces and policy.namespace not in self.namespaces:
                    errors.append(
                        PolicyProblem(
                            file,
                            None,
                            "metadata.namespace",
                            policy.namespace,
                            "namespace is not in this autoscaler's allowlist; policy ignored",
                        )
                    )
                    continue
                if policy.key in seen:
                    continue
                seen.add(policy.key)
                policies.append(policy)
        conflicts = list(result.conflicts)
        policies = self._one_owner_per_target(policies, owners, conflicts, errors)
        self._good = good
        self.current = tuple(policies)
        self.errors = tuple(errors)
        self.conflicts = tuple(conflicts)
        for error in errors:
            log.error("policy error: %s", error)
        if kept:
            log.warning("keeping the last good version of %s", ", ".join(kept))
        log.info("policies loaded", extra={"policies": len(policies), "errors": len(errors)})
        return ReloadResult(True, self.current, self.errors, tuple(kept), tuple(conflicts))

    @staticmethod
    def _one_owner_per_target(
        policies: list[ScalingPolicy],
        owners: dict[TargetKey, str],
        conflicts: list[TargetConflict],
        errors: list[PolicyProblem],
    ) -> list[ScalingPolicy]:
        """The loader settled the claims among the files it loaded; a file kept at its last good version
        can still claim a target that a newly loaded file claims too. The running policy keeps it."""
        ranked = sorted(policies, key=lambda p: (p.key != owners.get(target_identity(p)), _source_order(p)))
        owner_of: dict[TargetKey, ScalingPolicy] = {}
        refused: set[str] = set()
        for policy in ranked:
            owner = owner_of.setdefault(target_identity(policy), policy)
            if owner is policy:
                continue
            refused.add(policy.key)
            file, _, line = policy.source.rpartition(":")
            problem = PolicyProblem(
                file,
                int(line) if line.isdigit() else None,
                "spec.target",
                NO_VALUE,
                f"{describe_target(policy)} already has a policy: {owner.key} at {owner.source}; a target has "
                "one owner (two would fight over its replicas), so this policy is not loaded: retarget or remove one",
            )
            errors.append(problem)
            conflicts.append(TargetConflict(policy, owner, problem))
        return [p for p in policies if p.key not in refused]
