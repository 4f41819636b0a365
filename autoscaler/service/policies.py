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

API objects (issue 14): with a :class:`PolicyObjects` source, the ``ScalingPolicy`` and ``PolicyDefaults``
objects of the watched namespaces are loaded together with the files
(:func:`autoscaler.policy.loader.load_policy_objects`: files' defaults layer under an object's namespace
defaults; one owner per target across both, the running one keeps it, a file outranks an object at
start). An object is handled like a file: an invalid new generation keeps the last good one running
(its status says why), a deleted object is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autoscaler.core.policy import API_GROUP
from autoscaler.policy import PolicyProblem, ScalingPolicy, load_policies
from autoscaler.policy.crd import VERSION
from autoscaler.policy.loader import (
    LoadResult,
    TargetConflict,
    TargetKey,
    describe_target,
    load_policy_objects,
    object_source,
    target_identity,
)
from autoscaler.policy.schema import NO_VALUE
from autoscaler.service.informer import Informer, drop_managed_fields
from autoscaler.service.kube import KubeClient
from autoscaler.service.status import object_refusals

__all__ = ["PolicyDirectory", "PolicyObjects", "ReloadResult", "TargetConflict"]

OBJECTS_API = f"/apis/{API_GROUP}/{VERSION}"

Snapshot = tuple[tuple[str, ...], list[dict[str, Any]]]
"""The API objects at one moment: (a fingerprint of what the loader reads of them, the objects)."""


def _meaning(obj: Mapping[str, Any]) -> str:
    """What the loader reads of an object, as one string: its identity (uid), generation (the spec),
    labels and annotations. Not the resourceVersion: the leader's own status writes bump it, and
    reparsing every policy after each of them would be a full reload per tick."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    return repr((obj.get("kind"), meta.get("namespace"), meta.get("name"), meta.get("uid"), meta.get("generation"),
                 sorted((meta.get("labels") or {}).items()), sorted((meta.get("annotations") or {}).items())))


class PolicyObjects:
    """``ScalingPolicy`` and ``PolicyDefaults`` objects from list+watch caches: per namespace of the
    allowlist (the service's Roles are per namespace then), else cluster-wide. Until both caches have
    listed once, :meth:`snapshot` is None and only files are served (nothing is dropped for a cache
    that is not there yet)."""

    def __init__(self, client: KubeClient, *, namespaces: Sequence[str] = ()) -> None:
        self.client = client
        scopes = [f"/namespaces/{ns}" for ns in sorted(set(namespaces))] or [""]
        self._scoped = scopes != [""]
        self.policies = {
            s: Informer(client, f"{OBJECTS_API}{s}/scalingpolicies", transform=drop_managed_fields, name=f"sp{s}")
            for s in scopes
        }
        self.defaults = {
            s: Informer(client, f"{OBJECTS_API}{s}/policydefaults", transform=drop_managed_fields, name=f"pd{s}")
            for s in scopes
        }
        self._changes = 0  # changes the loader would see (not our own status writes)
        self._snapshot: tuple[int, Snapshot] | None = None
        for informer in self.informers():
            informer.on_change(self._changed)

    def _changed(self, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if old is None or new is None or _meaning(old) != _meaning(new):
            self._changes += 1

    def informers(self) -> list[Informer]:
        return [*self.policies.values(), *self.defaults.values()]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(informer.run(stop) for informer in self.informers()))

    def snapshot(self) -> Snapshot | None:
        """(fingerprint, objects): the fingerprint is what the loader reads of every object
        (:func:`_meaning`), so a reload parses again only when that changed. Taken each tick, it is
        rebuilt only after such a change (not at 10,000 objects per tick). None before every cache has
        synced."""
        if not all(informer.synced.is_set() for informer in self.informers()):
            return None
        if self._snapshot is None or self._snapshot[0] != self._changes:
            objects = [obj for informer in self.informers() for obj in informer.items()]
            self._snapshot = (self._changes, (tuple(sorted(_meaning(obj) for obj in objects)), objects))
        return self._snapshot[1]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached ``ScalingPolicy`` object (its status is what the leader compares to)."""
        informer = self.policies.get(f"/namespaces/{namespace}" if self._scoped else "")
        return None if informer is None else informer.get(namespace, name)

    async def write_status(
        self, namespace: str, name: str, patch: dict[str, Any], *, guard: Callable[[], bool] | None = None
    ) -> dict[str, Any]:
        """``PATCH .../scalingpolicies/<name>/status`` (a merge patch: only the status subresource)."""
        path = f"{OBJECTS_API}/namespaces/{namespace}/scalingpolicies/{name}/status"
        result: dict[str, Any] = await self.client.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json", guard=guard
        )
        return result

log = logging.getLogger("autoscaler.policies")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    changed: bool
    policies: tuple[ScalingPolicy, ...]
    errors: tuple[PolicyProblem, ...] = ()
    kept_stale: tuple[str, ...] = field(default_factory=tuple)  # files whose last good version is in use
    conflicts: tuple[TargetConflict, ...] = ()  # valid policies refused: their target has another policy
    object_problems: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Refused ScalingPolicy objects (their source -> (reason, message)), for their status."""


def _file_of(policy: ScalingPolicy) -> str:
    return policy.source.rsplit(":", 1)[0]


def _source_order(policy: ScalingPolicy) -> tuple[tuple[str, ...], int]:
    file, _, line = policy.source.rpartition(":")
    return Path(file).parts, int(line) if line.isdigit() else 0


class PolicyDirectory:
    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        *,
        namespaces: Sequence[str] = (),
        objects: PolicyObjects | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.namespaces = frozenset(namespaces)
        self.objects = objects
        self._fingerprint: object = None
        self._good: dict[str, tuple[ScalingPolicy, ...]] = {}
        self.current: tuple[ScalingPolicy, ...] = ()
        self.errors: tuple[PolicyProblem, ...] = ()
        self.conflicts: tuple[TargetConflict, ...] = ()
        self.object_problems: dict[str, tuple[str, str]] = {}
        self._uids: dict[str, object] = {}  # object source -> the uid whose last good version ``_good`` holds

    def _scan(self) -> tuple[tuple[str, str, int, int], ...]:
        entries: list[tuple[str, str, int, int]] = []
        if self.root is None or not self.root.is_dir():
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

    def snapshot(self) -> Snapshot | None:
        """The API objects now (take it on the event loop: the caches change there)."""
        return self.objects.snapshot() if self.objects is not None else None

    def reload(self, *, force: bool = False, objects: Snapshot | Literal["now"] | None = "now") -> ReloadResult:
        """Load again if a file or an object changed. ``objects``: a :meth:`snapshot` taken on the event
        loop when this runs in a thread (the default takes it here: for callers on the loop)."""
        snapshot = self.snapshot() if objects == "now" else objects
        fingerprint = (self._scan(), snapshot[0] if snapshot is not None else None)
        if not force and fingerprint == self._fingerprint:
            return ReloadResult(False, self.current, self.errors, conflicts=self.conflicts,
                                object_problems=self.object_problems)
        self._fingerprint = fingerprint
        owners = {target_identity(p): p.key for p in self.current}  # a running policy keeps its target
        result: LoadResult | None = None
        if self.root is None:
            result = LoadResult()
        elif self.root.is_dir():
            result = load_policies([self.root], owners=owners)
        uids: dict[str, object] = {}
        if result is not None and snapshot is not None:
            result = load_policy_objects(snapshot[1], files=result, owners=owners)
            uids = {object_source(obj): (obj.get("metadata") or {}).get("uid") for obj in snapshot[1]}
            known = set(result.files)  # objects are "files" here: each one all or nothing, last good kept
            result.files.extend(sorted(({_file_of(p) for p in result.policies} | result.failed_files) - known))
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
                # An object's last good version is its own: one deleted and applied again under the same
                # name (another uid) is a new object, and gets nothing until it loads.
                same_object = file not in uids or self._uids.get(file) == uids[file]
                if file in self._good and same_object:
                    good[file] = self._good[file]
                    kept.append(file)
                continue
            good[file] = tuple(by_file.get(file, []))
        policies: list[ScalingPolicy] = []
        seen: set[str] = set()
        # Files first: a file and an object with one namespace/name are the file's (the loader refused
        # the object); an object's kept last good version never displaces the file.
        for file in sorted(good, key=lambda f: (f in uids, f)):
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
        self._uids = {source: uid for source, uid in uids.items() if source in good}
        self.current = tuple(policies)
        self.errors = tuple(errors)
        self.conflicts = tuple(conflicts)
        for error in errors:
            log.error("policy error: %s", error)
        if kept:
            log.warning("keeping the last good version of %s", ", ".join(kept))
        log.info("policies loaded", extra={"policies": len(policies), "errors": len(errors)})
        self.object_problems = object_refusals(result)
        return ReloadResult(True, self.current, self.errors, tuple(kept), tuple(conflicts), self.object_problems)

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
