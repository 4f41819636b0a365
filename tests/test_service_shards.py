"""Shards (``run --shards N``): the fleet split across replicas, each shard with its own Lease.

Cases: the assignment is a stable hash of the target (the same in processes with different hash
seeds; two policies on one target share a shard); three replicas against the API stand-in spread six
shards two each, one LIST per replica per round and writes only to renew, then a replica that stops
renewing has its shards taken by the others once its Leases expire, and one that shuts down hands them
over at once; the controller over two sharded replicas decides exactly what one leader decides, tick
by tick, through a shard handover (the new holder continues from the persisted state); ``run --help``
documents ``--shards``; and three ``run`` processes against one stand-in: each shard one holder, each
target written by one process, ``kill -9`` of one moves its shards within the lease duration, and no
scale write ever comes from a process that did not hold the target's shard at that moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from kube_standin import KubeStandIn

from autoscaler.policy import load_policies
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.leader import LeaseSettings
from autoscaler.service.shards import GROUP_LABEL, ShardSet, shard_lease_name, shard_of

LEASES = "/apis/coordination.k8s.io/v1/namespaces/ops/leases"


def fleet_text(count: int, *, interval_s: int = 15, extra: str = "") -> str:
    docs = []
    for i in range(count):
        docs.append(
            f"""\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: p{i}, namespace: team-{i % 3}}}
spec:
  target: {{apiVersion: apps/v1, kind: Deployment, name: llm-{i}}}
  minReplicas: 1
  maxReplicas: 20
  intervalSeconds: {interval_s}
  metrics:
    - name: queue
      source: {{preset: vllm.queue_depth}}
      target: {{type: AverageValue, averageValue: 5}}
{extra}"""
        )
    return "---\n".join(docs)


def fleet(tmp_path: Path, count: int) -> list:  # type: ignore[type-arg]
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text(count))
    result = load_policies([path])
    assert not result.errors
    return list(result.policies)


def test_assignment_is_a_stable_hash_of_the_target(tmp_path: Path) -> None:
    policies = fleet(tmp_path, 12)
    here = [shard_of(p, 6) for p in policies]
    script = (
        "import json, sys; from autoscaler.policy import load_policies; from autoscaler.service.shards import shard_of;"
        f"print(json.dumps([shard_of(p, 6) for p in load_policies([{str(tmp_path / 'fleet.yaml')!r}]).policies]))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, check=True
        )
        assert json.loads(out.stdout) == here
    assert all(0 <= s < 6 for s in here) and len(set(here)) > 1  # spread, not one shard
    renamed = load_policies([tmp_path / "fleet.yaml"]).policies[0]
    from dataclasses import replace

    # the shard follows the target, not the policy's name: one target, one shard, one writer
    assert shard_of(replace(renamed, name="other"), 6) == here[0]
    retargeted = replace(renamed, target=replace(renamed.target, name="elsewhere"))
    assert [shard_of(retargeted, n) for n in range(1, 40)] != [shard_of(renamed, n) for n in range(1, 40)]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def holders(kube: KubeStandIn, count: int) -> list[str | None]:
    out = []
    for i in range(count):
        lease = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", shard_lease_name("ia", i))
        out.append(lease["spec"]["holderIdentity"] if lease else None)
    return out


async def test_replicas_spread_the_shards_and_take_over_a_dead_ones(tmp_path: Path) -> None:
    async with KubeStandIn() as kube:
        clock = Clock()
        clients = {name: KubeClient(KubeConfig(host=kube.url, token=name, retries=0)) for name in "abc"}
        sets = {
            name: ShardSet(clients[name], LeaseSettings(namespace="ops", name="ia", identity=name), 6, monotonic=clock)
            for name in "abc"
        }

        async def rounds(names: str, n: int) -> None:
            for _ in range(n):
                for name in names:
                    await sets[name].round()
                clock.t += 2

        try:
            await rounds("abc", 1)  # announce only: nobody takes a shard on its first round
            assert holders(kube, 6) == [None] * 6
            await rounds("abc", 4)
            assert sorted(holders(kube, 6)) == ["a", "a", "b", "b", "c", "c"]
            assert {name: len(s.held()) for name, s in sets.items()} == {"a": 2, "b": 2, "c": 2}
            # steady state: per replica and round one LIST (label-selected), one GET of the single
            # Lease (a --shards 1 leader would be a second writer), and writes only to renew its
            # membership and its two shards
            kube.requests.clear()
            await rounds("abc", 1)
            for name in "abc":
                mine = [r for r in kube.requests if r.user == f"Bearer {name}"]
                assert [
                    (r.path.rsplit("/", 1)[-1], r.query.get("labelSelector")) for r in mine if r.method == "GET"
                ] == [
                    ("leases", f"{GROUP_LABEL}=ia"),
                    ("ia", None),
                ]
                assert sorted(r.method for r in mine if r.method != "GET") == ["PUT", "PUT", "PUT"]
            # c stops renewing (killed): nothing moves before its Leases expire, all moves after
            c_shards = [i for i, h in enumerate(holders(kube, 6)) if h == "c"]
            await rounds("ab", 6)  # 12 s < 15 s
            assert [holders(kube, 6)[i] for i in c_shards] == ["c", "c"]
            await rounds("ab", 3)
            assert sorted(holders(kube, 6)) == ["a", "a", "a", "b", "b", "b"]
            assert len(sets["a"].held()) == 3 and len(sets["b"].held()) == 3
            # a graceful shutdown hands the shards over at once (no expiry to wait for)
            await sets["b"].release()
            await rounds("a", 2)
            assert holders(kube, 6) == ["a"] * 6
            # b comes back: a gives shards back until both hold their share, each shard one holder
            await rounds("ab", 5)
            assert sorted(holders(kube, 6)) == ["a", "a", "a", "b", "b", "b"]
            assert not set(sets["a"].held()) & set(sets["b"].held())
        finally:
            for client in clients.values():
                await client.close()


def queue_at(tick: int, index: int) -> float:
    """A load step per target: high, then low (scale-down waits out the stabilization window)."""
    return float(10 + 8 * index) if tick < 6 else 2.0


async def test_sharded_replicas_decide_exactly_what_one_leader_decides(tmp_path: Path) -> None:
    from service_harness import ScriptedSignals

    from autoscaler.service.actuator import KubeActuator
    from autoscaler.service.controller import Controller
    from autoscaler.service.policies import PolicyDirectory
    from autoscaler.service.shards import ShardedStateStore
    from autoscaler.service.state import ConfigMapStateStore
    from autoscaler.service.telemetry import Telemetry

    policies = fleet(tmp_path, 8)
    t0 = 1_800_000_000.0
    async with KubeStandIn() as single_kube, KubeStandIn() as shard_kube:
        for kube in (single_kube, shard_kube):
            for i in range(8):
                kube.add_deployment(f"team-{i % 3}", f"llm-{i}", 1)
        signals = ScriptedSignals()
        clients = []

        def controller(url: str, token: str, **kwargs: object) -> Controller:
            client = KubeClient(KubeConfig(host=url, token=token, retries=0))
            clients.append(client)
            leadership = kwargs.get("leadership")
            store = (
                ShardedStateStore(client, namespace="ops", name="ia", shards=leadership)
                if isinstance(leadership, ShardSet)
                else ConfigMapStateStore(client, namespace="ops", name="ia-state")
            )
            return Controller(
                policies=PolicyDirectory(tmp_path),
                signals=signals,  # type: ignore[arg-type]
                actuator=KubeActuator(client, clock=lambda: t0),
                telemetry=Telemetry(),
                store=store,
                leadership=kwargs.get("leadership"),  # type: ignore[arg-type]
                clock=lambda: t0,
            )

        clock = Clock()
        single = controller(single_kube.url, "single")
        shard_clients = {n: KubeClient(KubeConfig(host=shard_kube.url, token=n, retries=0)) for n in "ab"}
        clients.extend(shard_clients.values())
        sets = {
            n: ShardSet(shard_clients[n], LeaseSettings(namespace="ops", name="ia", identity=n), 3, monotonic=clock)
            for n in "ab"
        }
        replicas = {n: controller(shard_kube.url, n, leadership=sets[n]) for n in "ab"}
        running = "a"  # b joins later and takes a shard over from a, in the middle of the windows
        await single.load_state(t0)
        for controller_ in replicas.values():
            await controller_.load_state(t0)
        mismatches, owners = [], {}
        try:
            for tick in range(40):
                if tick == 12:
                    running = "ab"
                # election rounds between two ticks, 2 s apart (the election's clock is its own): a
                # give-back waits until no write can be in flight (the client's timeout, 10 s), then the
                # new holder confirms in its next round that no other writer is live
                for _ in range(8):
                    for name in running:
                        await sets[name].round()
                    clock.t += 2
                now = t0 + 15 * tick
                for i, policy in enumerate(policies):
                    signals.set(policy.key, queue=queue_at(tick, i))
                expected = {r.policy: r for r in await single.tick(now) if r.decision}
                got = {}
                for name in running:
                    for record in await replicas[name].tick(now):
                        if record.decision:
                            assert record.policy not in got, f"{record.policy} decided by two replicas at {tick}"
                            got[record.policy] = record
                            owners.setdefault(record.policy, []).append((tick, name))
                assert set(got) == set(expected), (tick, sorted(set(expected) - set(got)))
                for key, record in expected.items():
                    theirs = got[key]
                    if (record.decision.desired_replicas, record.decision.reason, record.wrote) != (
                        theirs.decision.desired_replicas,
                        theirs.decision.reason,
                        theirs.wrote,
                    ):
                        mismatches.append((tick, key, record.decision, theirs.decision))
                single_kube.reconcile_workloads()
                shard_kube.reconcile_workloads()
            assert not mismatches, mismatches[:3]
            moved = [key for key, seen in owners.items() if {name for _, name in seen} == {"a", "b"}]
            assert moved, "no policy changed hands: the handover was not exercised"
            # the handover happened inside the stabilization window, and a scale-down came after it
            for key in moved:
                first_b = min(t for t, n in owners[key] if n == "b")
                assert first_b < 26
            for i in range(8):
                args = ("apps", "v1", "deployments", f"team-{i % 3}", f"llm-{i}")
                assert single_kube.get_object(*args)["spec"] == shard_kube.get_object(*args)["spec"]
            writers = {r.user for r in shard_kube.writes("/scale")}
            assert writers == {"Bearer a", "Bearer b"}
        finally:
            for client in clients:
                await client.close()


def test_run_help_documents_shards() -> None:
    exe = Path(sys.executable).parent / "inference-autoscaler"
    out = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    assert "--shards N" in flat and "(default: 1: one Lease, one leader)" in flat
    assert "--lease-duration" not in out  # hidden: for tests


PROCESS_POLICY = """\
  fallback: {failureThreshold: 0, behavior: static, replicas: 3}
  behavior:
    scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 100, periodSeconds: 1}]}
    scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 100, periodSeconds: 1}]}
"""
LEASE_S, RETRY_S = 3, 0.5


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stop(proc: asyncio.subprocess.Process) -> int | None:
    """SIGTERM (graceful: the leases are released), SIGKILL if it has not exited within 20 s."""
    if proc.returncode is None:
        proc.terminate()
    try:
        return await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None


async def test_three_processes_split_the_fleet_and_fail_over(tmp_path: Path) -> None:
    import aiohttp
    from kube_standin import wait_until, write_kubeconfig

    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(fleet_text(12, interval_s=1, extra=PROCESS_POLICY))
    policies = load_policies([directory / "fleet.yaml"]).policies
    shard_of_target = {p.target.name: shard_of(p, 6) for p in policies}
    names = ("p0", "p1", "p2")
    exe = Path(sys.executable).parent / "inference-autoscaler"
    async with KubeStandIn() as kube:
        for p in policies:
            kube.add_deployment(p.namespace, p.target.name, 1)
        ports = {name: free_port() for name in names}
        procs = {}

        async def start(name: str, log: BinaryIO) -> asyncio.subprocess.Process:
            kubeconfig = tmp_path / f"kubeconfig-{name}"
            return await asyncio.create_subprocess_exec(
                str(exe), "run", "--policies", str(directory), "--prometheus", "http://127.0.0.1:9",
                "--timeout", "0.5", "--kubeconfig", str(kubeconfig), "--namespace", "ops", "--identity", name,
                "--lease-name", "ia", "--shards", "6", "--lease-duration", str(LEASE_S), "--renew-deadline", "2",
                "--retry-period", str(RETRY_S), "--listen", f"127.0.0.1:{ports[name]}", "--log-level", "warning",
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

        for name in names:
            write_kubeconfig(tmp_path / f"kubeconfig-{name}", kube.url, token=name)
            with (tmp_path / f"{name}.log").open("wb") as log:  # the child keeps its own copy
                procs[name] = await start(name, log)

        def holders() -> list[str | None]:
            out = []
            for i in range(6):
                lease = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", shard_lease_name("ia", i))
                out.append(lease["spec"]["holderIdentity"] if lease else None)
            return out

        async def drift() -> None:  # someone keeps scaling every target to 1: each holder scales it back
            while True:
                for p in policies:
                    obj = kube.get_object("apps", "v1", "deployments", p.namespace, p.target.name)
                    if obj["spec"]["replicas"] != 1:
                        obj["spec"]["replicas"] = 1
                        kube.put_object("apps", "v1", "deployments", obj)
                await asyncio.sleep(0.3)

        def written_since(start: int) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for r in kube.requests[start:]:
                if r.method == "PUT" and r.path.endswith("/scale") and r.status < 400:
                    out.setdefault(r.path.split("/")[-2], set()).add(r.user.removeprefix("Bearer "))
            return out

        drifter = asyncio.create_task(drift())
        try:
            await wait_until(lambda: sorted(map(str, holders())) == ["p0", "p0", "p1", "p1", "p2", "p2"], 30)
            start = len(kube.requests)
            await asyncio.sleep(3)
            steady = holders()
            writers = written_since(start)
            assert set(writers) == set(shard_of_target)  # every target written...
            for target, who in writers.items():  # ...by exactly one process, the holder of its shard
                assert who == {steady[shard_of_target[target]]}, (target, who, steady)
            async with aiohttp.ClientSession() as http:
                reported = {}
                for name in names:
                    async with http.get(f"http://127.0.0.1:{ports[name]}/metrics") as response:
                        reported[name] = await response.text()
            assert all("inference_autoscaler_shards_held 2.0" in text for text in reported.values())
            for i in range(6):
                line = f'inference_autoscaler_shard_leader{{shard="{i}"}} 1.0'
                assert [name for name in names if line in reported[name]] == [steady[i]]

            victim_shards = [i for i, h in enumerate(steady) if h == "p2"]
            procs["p2"].kill()
            loop = asyncio.get_running_loop()
            killed_at, killed_index = loop.time(), len(kube.requests)
            await wait_until(lambda: "p2" not in holders() and None not in holders(), 15)
            moved_after_s = loop.time() - killed_at
            assert moved_after_s <= LEASE_S + 3 * RETRY_S + 1.5, moved_after_s
            assert sorted(map(str, holders())) == ["p0", "p0", "p0", "p1", "p1", "p1"]
            victims = {t for t, s in shard_of_target.items() if s in victim_shards}
            await wait_until(lambda: victims <= set(written_since(killed_index)), 10)
            after = holders()
            for target in victims:
                assert written_since(killed_index)[target] == {after[shard_of_target[target]]}
        finally:
            drifter.cancel()
            codes = [await stop(procs[name]) for name in names]
            logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("p0", "p1")}
        assert codes[:2] == [0, 0], logs
        for text in logs.values():
            errors = [line for line in text.splitlines() if '"level": "error"' in line or "Traceback" in line]
            assert not errors, errors[:3]
        assert holders() == [None] * 6  # released on SIGTERM

        # Over the whole run, every scale write came from the holder of its target's shard at that
        # moment, as the API server saw it (its log is in the order it served the requests).
        holder: dict[int, str | None] = {}
        checked = 0
        for r in kube.requests:
            if r.status >= 400 or r.method not in ("PUT", "POST"):
                continue
            if "/leases" in r.path and isinstance(r.body, dict):
                name = r.body.get("metadata", {}).get("name") or r.path.rsplit("/", 1)[-1]
                if name.startswith("ia-shard-"):
                    holder[int(name.removeprefix("ia-shard-"))] = r.body["spec"].get("holderIdentity")
            elif r.path.endswith("/scale"):
                target = r.path.split("/")[-2]
                assert holder.get(shard_of_target[target]) == r.user.removeprefix("Bearer "), (target, r.user)
                checked += 1
        assert checked > 24


def test_chart_passes_shards_and_grants_their_leases_and_state() -> None:
    from test_deploy_chart import render

    def role_and_args(values: dict) -> tuple[list, list]:  # type: ignore[type-arg]
        docs = render(values)
        (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-self")]
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        return role["rules"], deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    rules, args = role_and_args({})
    assert not any(a.startswith("--shards") for a in args)
    assert not any("list" in r["verbs"] for r in rules if "leases" in r["resources"])
    rules, args = role_and_args({"shards": 3})
    assert "--shards=3" in args
    assert any(
        set(r["verbs"]) >= {"list", "get", "update", "delete"} and "resourceNames" not in r
        for r in rules
        if "leases" in r["resources"]
    )
    (state,) = [r for r in rules if "configmaps" in r["resources"] and "resourceNames" in r]
    lease = next(a for a in args if a.startswith("--lease-name=")).split("=", 1)[1]
    assert {f"{lease}-state-shard-{i}" for i in range(3)} <= set(state["resourceNames"])
