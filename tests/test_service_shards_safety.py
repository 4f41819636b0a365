"""Shards: no unsafe write (review 3, findings 1, 2, 4-8), against the API stand-in over real HTTP.

Cases: replicas running --shards 3 and 4 never both hold a write guard for one target, and neither
takes anything while the other is live; a --shards 1 leader and a --shards 3 replica likewise (both
directions: the single elector refuses while shard Leases are live); Leases record the shard count; a
give-back releases the shard only once its write in flight has ended (the write lands before the new
holder acquires); a state save after a 409 with another writer's content writes nothing and the shard
is read again; a state read from a shard is applied only to policies of that shard now, external
policies of shards not held are restored from a read at start; a shard given back is not renewed in
the same round, and a shard whose Lease is deleted under us stops being writable at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from kube_standin import KubeStandIn
from test_service_shards import Clock, fleet

from autoscaler.core.policy import Mode
from autoscaler.core.step import TargetState
from autoscaler.service.actuator import KubeActuator
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.leader import LeaseElector, LeaseSettings
from autoscaler.service.shards import (
    COUNT_LABEL,
    ShardedStateStore,
    ShardSet,
    SingleLeaseFence,
    shard_lease_name,
    shard_of,
)
from autoscaler.service.state import ConfigMapStateStore, decode_states, encode_states
from autoscaler.service.telemetry import Telemetry


def client(url: str, token: str, timeout_s: float = 10.0) -> KubeClient:
    return KubeClient(KubeConfig(host=url, token=token, retries=0, timeout_s=timeout_s))


def stored(kube: KubeStandIn, *args: str) -> dict[str, Any]:
    obj = kube.get_object(*args)
    assert obj is not None, args
    return obj


def confirm_read(shards: ShardSet) -> None:
    for i, term in shards.unread():
        shards.mark_read(i, term)


async def test_replicas_with_different_shard_counts_never_write_one_target(tmp_path: Path) -> None:
    policies = fleet(tmp_path, 12)
    async with KubeStandIn() as kube:
        clock = Clock()
        co, cn = client(kube.url, "old"), client(kube.url, "new")
        telemetry = Telemetry()
        try:
            old = ShardSet(co, LeaseSettings(namespace="ops", name="ia", identity="old"), 3, monotonic=clock)
            for _ in range(3):
                await old.round()
                clock.t += 2
            confirm_read(old)
            assert len(old.held()) == 3 and all(old.guard(p)() for p in policies)
            lease = stored(kube, "coordination.k8s.io", "v1", "leases", "ops", shard_lease_name("ia", 0))
            assert lease["metadata"]["labels"][COUNT_LABEL] == "3"
            new = ShardSet(
                cn, LeaseSettings(namespace="ops", name="ia", identity="new"), 4, monotonic=clock, telemetry=telemetry
            )
            for _ in range(6):
                await old.round()
                await new.round()
                clock.t += 2
                confirm_read(old)
                confirm_read(new)
                assert not [p for p in policies if old.guard(p)() and new.guard(p)()]
            # the new count takes nothing while the old replica is live; the old one stopped writing
            assert new.held() == [] and not any(new.guard(p)() for p in policies)
            assert not any(old.guard(p)() for p in policies) and old.blocker.reason
            assert telemetry.lease_conflict._value.get() == 1
            assert "--shards 3" in new.blocker.reason
            # the old replica goes away (shutdown): the new one takes over, after the in-flight wait
            await old.release()
            for _ in range(10):
                await new.round()
                clock.t += 2
            confirm_read(new)
            assert len(new.held()) == 4 and all(new.guard(p)() for p in policies)
            assert telemetry.lease_conflict._value.get() == 0
        finally:
            await co.close()
            await cn.close()


async def test_single_leader_and_sharded_replicas_exclude_each_other(tmp_path: Path) -> None:
    policies = fleet(tmp_path, 12)
    async with KubeStandIn() as kube:
        clock = Clock()
        co, cn, c2 = client(kube.url, "old"), client(kube.url, "new"), client(kube.url, "late")
        try:
            settings = LeaseSettings(namespace="ops", name="ia", identity="old")
            single = LeaseElector(co, settings, monotonic=clock, fence=SingleLeaseFence(co, settings, monotonic=clock))
            new = ShardSet(cn, LeaseSettings(namespace="ops", name="ia", identity="new"), 3, monotonic=clock)
            assert await single.try_acquire_or_renew()
            for _ in range(5):
                await single.try_acquire_or_renew()
                await new.round()
                clock.t += 2
                confirm_read(new)
                assert not (single.is_leader() and any(new.guard(p)() for p in policies))
            # the sharded replica refused while the single Lease was live; the single leader stepped down
            # once it saw a live replica with shards, and nobody wrote meanwhile
            assert not single.is_leader() and "--shards 3" in single.blocked
            for _ in range(6):
                await single.try_acquire_or_renew()
                await new.round()
                clock.t += 2
                confirm_read(new)
                assert not (single.is_leader() and any(new.guard(p)() for p in policies))
            assert len(new.held()) == 3 and all(new.guard(p)() for p in policies)
            # a --shards 1 replica starting now acquires nothing while the shards are live
            late_settings = LeaseSettings(namespace="ops", name="ia", identity="late")
            late = LeaseElector(
                c2, late_settings, monotonic=clock, fence=SingleLeaseFence(c2, late_settings, monotonic=clock)
            )
            single_path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/ia"
            writes = len([r for r in kube.requests if r.method != "GET" and r.path == single_path])
            for _ in range(3):
                assert not await late.try_acquire_or_renew()
                await new.round()
                clock.t += 2
            assert len([r for r in kube.requests if r.method != "GET" and r.path == single_path]) == writes
        finally:
            for c in (co, cn, c2):
                await c.close()


class SlowWrites(KubeStandIn):
    """Holds replica a's scale writes for a while before applying them (a slow API server)."""

    slow = False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mine = request.headers.get("Authorization") == "Bearer a"
        if self.slow and mine and request.method == "PUT" and "/scale" in request.path:
            await asyncio.sleep(1.0)
        return await super()._handle(request)


async def test_a_shard_given_back_is_released_only_after_its_writes_in_flight(tmp_path: Path) -> None:
    policies = fleet(tmp_path, 8)
    kube = SlowWrites()
    async with kube:
        for p in policies:
            kube.add_deployment(p.namespace, p.target.name, 1)
        clock = Clock()
        ca, cb = client(kube.url, "a", timeout_s=4.0), client(kube.url, "b", timeout_s=4.0)
        try:
            a = ShardSet(ca, LeaseSettings(namespace="ops", name="ia", identity="a"), 2, monotonic=clock)
            b = ShardSet(cb, LeaseSettings(namespace="ops", name="ia", identity="b"), 2, monotonic=clock)
            for _ in range(3):
                await a.round()
                clock.t += 2
            confirm_read(a)
            await b.round()  # b announces itself: a is over its share and gives shard 1 back
            p = next(p for p in policies if shard_of(p, 2) == 1)
            actuator = KubeActuator(ca)
            view = await actuator.read_scale(p.namespace, p.target, fresh=True)
            kube.slow = True
            write = asyncio.create_task(actuator.write_scale(p.namespace, p.target, view, 5, guard=a.guard(p)))
            await asyncio.sleep(0.2)  # on the wire
            for _ in range(2):  # the old code released here
                await a.round()
                await b.round()
                clock.t += 2
            assert 1 in a._draining and b.held() == []  # the write may still be in flight: not released
            await write
            for _ in range(4):
                await a.round()
                await b.round()
                clock.t += 2
            assert b.held() == [1]
            scale = [r for r in kube.requests if r.method == "PUT" and r.path.endswith("/scale")]
            acquired = [
                k
                for k, r in enumerate(kube.requests)
                if r.user == "Bearer b" and r.method in ("PUT", "POST") and "shard-1" in str(r.body)
            ]
            assert scale and acquired and kube.requests.index(scale[-1]) < acquired[0]
            # a write attempt is never let out later than one that ends before the Lease could expire
            elector = a.electors[0]
            assert elector.write_window_ok(4.0) and not elector.write_window_ok(16.0)
        finally:
            await ca.close()
            await cb.close()


async def test_a_save_after_a_conflict_with_another_writers_content_writes_nothing() -> None:
    async with KubeStandIn() as kube:
        ca, cb = client(kube.url, "a"), client(kube.url, "b")
        try:
            ours = ConfigMapStateStore(ca, namespace="ops", name="ia-state")
            theirs = ConfigMapStateStore(cb, namespace="ops", name="ia-state")
            assert await ours.load() == {}
            assert await ours.save({"t/p": TargetState(load_times=(("x", 11.0),))})
            await theirs.load()
            assert await theirs.save({"t/p": TargetState(load_times=(("x", 22.0),))})  # a late writer
            assert not await ours.save({"t/p": TargetState(load_times=(("x", 33.0),))})
            cm = stored(kube, "", "v1", "configmaps", "ops", "ia-state")
            assert decode_states(cm["binaryData"]["states.json.z"])["t/p"].load_times == (("x", 22.0),)
            assert ours.stale and not await ours.save({"t/p": TargetState()})  # until read again
            assert (await ours.load())["t/p"].load_times == (("x", 22.0),)
            assert await ours.save({"t/p": TargetState(load_times=(("x", 44.0),))})
            # a write of metadata only (same content) is retried, not refused
            cm = stored(kube, "", "v1", "configmaps", "ops", "ia-state")
            cm["metadata"].setdefault("annotations", {})["touched"] = "yes"
            kube.put_object("", "v1", "configmaps", cm)
            assert await ours.save({"t/p": TargetState(load_times=(("x", 55.0),))})
        finally:
            await ca.close()
            await cb.close()


async def test_a_shards_state_applies_only_to_its_policies_and_externals_are_read_at_start(tmp_path: Path) -> None:
    policies = fleet(tmp_path, 12)
    async with KubeStandIn() as kube:
        clock = Clock()
        ca, cb = client(kube.url, "a"), client(kube.url, "b")
        try:
            a = ShardSet(ca, LeaseSettings(namespace="ops", name="ia", identity="a"), 2, monotonic=clock)
            for _ in range(3):
                await a.round()
                clock.t += 2
            store = ShardedStateStore(ca, namespace="ops", name="ia", shards=a)
            await store.load()
            for p in policies:
                a.guard(p)
            await a.round()
            in0 = [p for p in policies if shard_of(p, 2) == 0]
            in1 = [p for p in policies if shard_of(p, 2) == 1]
            remembered = TargetState(load_times=(("x", 7.0),))
            assert await store.save({p.key: remembered for p in policies})
            # a foreign entry in shard 0's ConfigMap (a retargeted policy's old state) is not applied
            cm = stored(kube, "", "v1", "configmaps", "ops", "ia-state-shard-0")
            states = decode_states(cm["binaryData"]["states.json.z"])
            assert set(states) == {p.key for p in in0}
            states[in1[0].key] = TargetState(load_times=(("x", 99.0),))
            cm["binaryData"]["states.json.z"] = encode_states(states)
            kube.put_object("", "v1", "configmaps", cm)
            # b starts, holding nothing: reads every shard once, read-only
            b = ShardSet(cb, LeaseSettings(namespace="ops", name="ia", identity="b"), 2, monotonic=clock)
            other = ShardedStateStore(cb, namespace="ops", name="ia", shards=b)
            loaded = await other.load()
            assert loaded[in1[0].key].load_times == (("x", 7.0),)  # its own shard's entry wins
            assert not other.restorable(in0[0].key, in0[0])  # patch policies of shards b does not hold: no
            as_external = replace(in0[0], mode=Mode.EXTERNAL)
            assert other.restorable(in0[0].key, as_external)  # ... external ones (served by every replica): yes
            # the same policy retargeted to a target of the other shard: its old entry is not restorable
            moved = next(
                q
                for k in range(100)
                if shard_of(q := replace(as_external, target=replace(as_external.target, name=f"x{k}")), 2) == 1
            )
            assert not other.restorable(in0[0].key, moved)
            # a holds shard 0: shard 0's ConfigMap entry of a shard-1 policy is not applied by a either
            again = ShardedStateStore(ca, namespace="ops", name="ia", shards=a)
            a.reread(0)  # as after a new term
            await again.load()
            assert again.restorable(in0[0].key, in0[0]) and not again.restorable(in1[0].key, in1[0])
        finally:
            await ca.close()
            await cb.close()


async def test_given_back_not_renewed_and_a_deleted_lease_stops_writes_at_once(tmp_path: Path) -> None:
    policies = fleet(tmp_path, 8)
    async with KubeStandIn() as kube:
        clock = Clock()
        ca, cb = client(kube.url, "a"), client(kube.url, "b")
        try:
            a = ShardSet(ca, LeaseSettings(namespace="ops", name="ia", identity="a"), 2, monotonic=clock)
            b = ShardSet(cb, LeaseSettings(namespace="ops", name="ia", identity="b"), 2, monotonic=clock)
            for _ in range(3):
                await a.round()
                clock.t += 2
            confirm_read(a)
            await b.round()
            await a.round()  # plans the give-back of shard 1
            clock.t += 2
            assert 1 in a._draining
            mark = len(kube.requests)
            await a.round()  # releases it: one write to shard 1's Lease, the release, no renewal after it
            shard1 = [r for r in kube.requests[mark:] if r.method == "PUT" and r.path.endswith("ia-shard-1")]
            assert [r.body["spec"]["holderIdentity"] for r in shard1] == [None]
            # shard 0's Lease is deleted under a: not writable from the next round on
            p = next(p for p in policies if shard_of(p, 2) == 0)
            assert a.guard(p)()
            kube.delete_object("coordination.k8s.io", "v1", "leases", "ops", shard_lease_name("ia", 0))
            await a.round()
            assert not a.guard(p)()
        finally:
            await ca.close()
            await cb.close()
