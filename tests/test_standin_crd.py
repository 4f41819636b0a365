"""CustomResourceDefinitions in the Kubernetes API stand-in, over real HTTP (aiohttp as a raw client,
the official ``kubernetes`` client's CustomObjectsApi), and kubectl 1.32 as a real client.

Case matrix:

* CRD lifecycle: create -> status NamesAccepted/Established, acceptedNames; served per version in
  discovery with ``plural/status`` and ``plural/scale``; a bad CRD name is 422; delete -> the type is no
  longer served and its objects are gone (DELETED events to watchers);
* schema: minimum/maximum, enum, pattern, maxLength, required, maxItems, types, int-or-string are 422
  Invalid with the apiserver's message and ``details.causes``; unknown fields are pruned (Warn: the
  default, with a Warning header), refused with ``fieldValidation=Strict`` (400, the decoder's text),
  dropped silently with Ignore; ``x-kubernetes-preserve-unknown-fields`` keeps them;
* status subresource: the main resource ignores status, ``/status`` changes only status, generation
  bumps on spec changes only; the scale subresource follows the CRD's paths;
* Table output from ``additionalPrinterColumns`` (JSONPath filters, types, priority, date as an age),
  Name and Age when none, PartialObjectMetadata rows;
* kubectl: apply of the CRD and of a policy (create, then patch), get with printer columns, -o yaml,
  -o jsonpath, an invalid object refused with the apiserver's text, an unknown field refused (Strict),
  delete -f, all without --validate=false.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest
import yaml
from kube_standin import KubeStandIn, write_kubeconfig
from kubernetes.client.rest import ApiException
from standin_crd import human_duration, jsonpath

GROUP, VERSION, PLURAL = "inference-autoscaler.io", "v1alpha1", "scalingpolicies"
BASE = f"/apis/{GROUP}/{VERSION}/namespaces/team-a/{PLURAL}"


def crd(*, scale: bool = True, columns: bool = True) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["target"],
                        "properties": {
                            "target": {"type": "string", "maxLength": 20, "pattern": "^[a-z][-a-z0-9]*$"},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 1, "maximum": 100},
                            "mode": {"type": "string", "enum": ["patch", "metrics"]},
                            "window": {"x-kubernetes-int-or-string": True},
                            "signals": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    },
                    "status": {
                        "type": "object",
                        "properties": {
                            "replicas": {"type": "integer"},
                            "selector": {"type": "string"},
                            "conditions": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            }
        },
        "subresources": {"status": {}},
    }
    if scale:
        version["subresources"]["scale"] = {
            "specReplicasPath": ".spec.minReplicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    if columns:
        version["additionalPrinterColumns"] = [
            {"name": "Target", "type": "string", "jsonPath": ".spec.target"},
            {"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicas"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "scalingpolicy", "kind": "ScalingPolicy",
                      "listKind": "ScalingPolicyList", "shortNames": ["sp"]},
            "versions": [version],
        },
    }


def policy(name: str = "chat", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"target": "chat-llm", "minReplicas": 1, "maxReplicas": 8, **spec},
    }


async def call(
    url: str, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
    content_type: str = "application/json", accept: str = "application/json",
) -> tuple[int, Any, list[str]]:
    async with aiohttp.ClientSession() as session, session.request(
        method, url + path, params=params or {}, data=None if body is None else json.dumps(body),
        headers={"Content-Type": content_type, "Accept": accept},
    ) as resp:
        return resp.status, await resp.json(), resp.headers.getall("Warning", [])


async def with_crd(kube: KubeStandIn, definition: dict[str, Any] | None = None) -> dict[str, Any]:
    status, body, _ = await call(kube.url, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                 definition or crd())
    assert status == 201, body
    return body


async def test_a_crd_serves_its_type_until_deleted() -> None:
    async with KubeStandIn() as kube:
        created = await with_crd(kube)
        conditions = {c["type"]: c["status"] for c in created["status"]["conditions"]}
        assert conditions == {"NamesAccepted": "True", "Established": "True"}
        assert created["status"]["acceptedNames"]["kind"] == "ScalingPolicy"
        _, groups, _ = await call(kube.url, "GET", "/apis")
        ours = next(g for g in groups["groups"] if g["name"] == GROUP)
        assert ours["preferredVersion"]["version"] == VERSION
        _, resources, _ = await call(kube.url, "GET", f"/apis/{GROUP}/{VERSION}")
        by_name = {r["name"]: r for r in resources["resources"]}
        assert set(by_name) == {PLURAL, f"{PLURAL}/status", f"{PLURAL}/scale"}
        assert by_name[PLURAL]["singularName"] == "scalingpolicy" and by_name[PLURAL]["shortNames"] == ["sp"]
        assert by_name[f"{PLURAL}/scale"]["kind"] == "Scale"
        status, made, _ = await call(kube.url, "POST", BASE, policy())
        assert status == 201 and made["metadata"]["generation"] == 1
        rv = kube.resource_version
        watch = asyncio.create_task(read_all(kube.url, BASE, {"watch": "1", "resourceVersion": str(rv)}))
        await asyncio.sleep(0.2)
        status, _, _ = await call(kube.url, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}")
        assert status == 200
        events = await asyncio.wait_for(watch, 5)  # the watch ends when its type goes away
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "chat")]
        assert kube.list_objects(GROUP, VERSION, PLURAL) == []
        status, _, _ = await call(kube.url, "GET", BASE)
        assert status == 404
        bad = crd()
        bad["metadata"]["name"] = "policies.example.com"
        status, body, _ = await call(kube.url, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad)
        assert status == 422 and 'metadata.name: Invalid value: "policies.example.com": must be spec.names.plural+"."+spec.group' in body["message"]


async def read_all(url: str, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + path, params=params) as resp:
        return [json.loads(line) async for line in resp.content if line.strip()]


@pytest.mark.parametrize(
    ("spec", "field", "reason", "text"),
    [
        ({"minReplicas": -1}, "spec.minReplicas", "FieldValueInvalid",
         "spec.minReplicas: Invalid value: -1: spec.minReplicas in body should be greater than or equal to 0"),
        ({"maxReplicas": 101}, "spec.maxReplicas", "FieldValueInvalid",
         "spec.maxReplicas: Invalid value: 101: spec.maxReplicas in body should be less than or equal to 100"),
        ({"mode": "fast"}, "spec.mode", "FieldValueNotSupported",
         'spec.mode: Unsupported value: "fast": supported values: "patch", "metrics"'),
        ({"target": "Chat"}, "spec.target", "FieldValueInvalid",
         "spec.target: Invalid value: \"Chat\": spec.target in body should match '^[a-z][-a-z0-9]*$'"),
        ({"target": "a" * 21}, "spec.target", "FieldValueTooLong", "spec.target: Too long: may not be more than 20 bytes"),
        ({"signals": ["a", "b", "c"]}, "spec.signals", "FieldValueTooMany", "spec.signals: Too many: 3: must have at most 2 items"),
        ({"minReplicas": "two"}, "spec.minReplicas", "FieldValueTypeInvalid",
         'spec.minReplicas: Invalid value: "string": spec.minReplicas in body must be of type integer: "string"'),
        ({"window": [1]}, "spec.window", "FieldValueTypeInvalid", None),
        ({"target": None}, "spec.target", "FieldValueRequired", "spec.target: Required value"),
    ],
)
async def test_schema_violations_are_422_invalid_the_apiservers_way(
    spec: dict[str, Any], field: str, reason: str, text: str | None
) -> None:
    async with KubeStandIn() as kube:
        await with_crd(kube)
        body = policy(**spec)
        body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
        status, err, _ = await call(kube.url, "POST", BASE, body)
        assert status == 422 and err["reason"] == "Invalid" and err["kind"] == "Status"
        if text is not None:
            assert err["message"] == f'ScalingPolicy.{GROUP} "chat" is invalid: {text}'
        assert err["details"]["causes"][0]["field"] == field and err["details"]["causes"][0]["reason"] == reason
        assert err["details"]["kind"] == "ScalingPolicy" and err["details"]["group"] == GROUP
        assert kube.list_objects(GROUP, VERSION, PLURAL) == []
        # the same check on update and patch
        assert (await call(kube.url, "POST", BASE, policy()))[0] == 201
        status, _, _ = await call(kube.url, "PUT", f"{BASE}/chat", body)
        assert status == 422
        status, _, _ = await call(kube.url, "PATCH", f"{BASE}/chat", {"spec": spec},
                                  content_type="application/merge-patch+json")
        assert status == 422
        assert kube.get_object(GROUP, VERSION, PLURAL, "team-a", "chat")["spec"]["minReplicas"] == 1


async def test_several_errors_and_int_or_string() -> None:
    async with KubeStandIn() as kube:
        await with_crd(kube)
        status, err, _ = await call(kube.url, "POST", BASE, policy(minReplicas=-1, maxReplicas=0))
        assert status == 422 and err["message"].startswith(f'ScalingPolicy.{GROUP} "chat" is invalid: [spec.maxReplicas:')
        assert [c["field"] for c in err["details"]["causes"]] == ["spec.maxReplicas", "spec.minReplicas"]
        for window in (30, "5m"):
            status, _, _ = await call(kube.url, "POST", BASE, policy(name=f"w{type(window).__name__}", window=window))
            assert status == 201


async def test_unknown_fields_pruned_warned_or_refused() -> None:
    async with KubeStandIn() as kube:
        await with_crd(kube)
        body = policy(foo=1, extra={"anything": {"goes": True}})
        body["bogus"] = "x"
        status, err, _ = await call(kube.url, "POST", BASE, body, params={"fieldValidation": "Strict"})
        assert status == 400 and err["reason"] == "BadRequest"
        assert err["message"] == ('ScalingPolicy in version "v1alpha1" cannot be handled as a ScalingPolicy: '
                                  'strict decoding error: unknown field "bogus", unknown field "spec.foo"')
        status, made, warnings = await call(kube.url, "POST", BASE, body)  # Warn is the default
        assert status == 201 and "foo" not in made["spec"] and "bogus" not in made
        assert made["spec"]["extra"] == {"anything": {"goes": True}}  # preserve-unknown-fields
        assert warnings == ['299 - "unknown field \\"bogus\\""', '299 - "unknown field \\"spec.foo\\""']
        status, err, _ = await call(kube.url, "PATCH", f"{BASE}/chat", {"spec": {"bar": 1}},
                                    params={"fieldValidation": "Strict"}, content_type="application/merge-patch+json")
        assert status == 400 and err["message"] == 'strict decoding error: unknown field "spec.bar"'
        status, patched, warnings = await call(kube.url, "PATCH", f"{BASE}/chat", {"spec": {"bar": 1}},
                                               params={"fieldValidation": "Ignore"},
                                               content_type="application/merge-patch+json")
        assert status == 200 and "bar" not in patched["spec"] and warnings == []


async def test_status_subresource_and_generation() -> None:
    async with KubeStandIn() as kube:
        await with_crd(kube)
        body = policy()
        body["status"] = {"replicas": 9}
        _, made, _ = await call(kube.url, "POST", BASE, body)
        assert "status" not in made  # create through the main resource sets no status
        _, after, _ = await call(kube.url, "PUT", f"{BASE}/chat/status", {**made, "status": {"replicas": 2, "selector": "app=chat"}, "spec": {"target": "other"}})
        assert after["status"]["replicas"] == 2 and after["spec"]["target"] == "chat-llm"
        assert after["metadata"]["generation"] == 1
        _, after, _ = await call(kube.url, "PATCH", f"{BASE}/chat", {"spec": {"maxReplicas": 9}, "status": {"replicas": 7}},
                                 content_type="application/merge-patch+json")
        assert after["spec"]["maxReplicas"] == 9 and after["status"]["replicas"] == 2
        assert after["metadata"]["generation"] == 2
        _, after, _ = await call(kube.url, "PATCH", f"{BASE}/chat/status", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                                 content_type="application/merge-patch+json")
        assert after["status"]["conditions"][0]["status"] == "True" and after["metadata"]["generation"] == 2
        _, after, _ = await call(kube.url, "PATCH", f"{BASE}/chat", {"metadata": {"labels": {"a": "b"}}},
                                 content_type="application/merge-patch+json")
        assert after["metadata"]["generation"] == 2
        status, err, _ = await call(kube.url, "PUT", f"{BASE}/chat/status", {**after, "status": {"replicas": "many"}})
        assert status == 422 and err["details"]["causes"][0]["field"] == "status.replicas"
        # the scale subresource, through the official client
        cfg = kubernetes.client.Configuration()
        cfg.host = kube.url
        custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))
        scale = await asyncio.to_thread(custom.get_namespaced_custom_object_scale, GROUP, VERSION, "team-a", PLURAL, "chat")
        assert scale["spec"]["replicas"] == 1 and scale["status"] == {"replicas": 2, "selector": "app=chat"}
        await asyncio.to_thread(custom.patch_namespaced_custom_object_scale, GROUP, VERSION, "team-a", PLURAL, "chat",
                                {"spec": {"replicas": 3}})
        assert kube.get_object(GROUP, VERSION, PLURAL, "team-a", "chat")["spec"]["minReplicas"] == 3
        with pytest.raises(ApiException) as err_info:
            await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION, "team-a", PLURAL,
                                    policy(name="bad", minReplicas=-5))
        assert err_info.value.status == 422
        no_status = crd(scale=False)
        no_status["metadata"]["name"] = f"others.{GROUP}"
        no_status["spec"]["names"] = {"plural": "others", "kind": "Other"}
        del no_status["spec"]["versions"][0]["subresources"]
        await with_crd(kube, no_status)
        other = f"/apis/{GROUP}/{VERSION}/namespaces/team-a/others"
        _, made, _ = await call(kube.url, "POST", other, {**policy(), "kind": "Other", "status": {"replicas": 1}})
        assert made["status"] == {"replicas": 1}  # no status subresource: status is ordinary content
        status, _, _ = await call(kube.url, "GET", f"{other}/chat/status")
        assert status == 404


async def test_table_output_from_printer_columns() -> None:
    async with KubeStandIn() as kube:
        await with_crd(kube)
        await call(kube.url, "POST", BASE, policy(mode="patch"))
        await call(kube.url, "PATCH", f"{BASE}/chat/status",
                   {"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}},
                   content_type="application/merge-patch+json")
        await call(kube.url, "POST", BASE, policy(name="code"))
        accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        status, table, _ = await call(kube.url, "GET", BASE, accept=accept)
        assert status == 200 and table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
        assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
            ("Name", "string", 0), ("Target", "string", 0), ("Min", "integer", 0), ("Ready", "string", 0),
            ("Mode", "string", 1), ("Age", "date", 0)]
        assert [r["cells"][:5] for r in table["rows"]] == [["chat", "chat-llm", 1, "True", "patch"], ["code", "chat-llm", 1, None, None]]
        assert table["rows"][0]["cells"][5] in ("0s", "1s", "2s")
        assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
        assert table["rows"][0]["object"]["metadata"]["name"] == "chat"
        _, one, _ = await call(kube.url, "GET", f"{BASE}/chat", accept=accept, params={"includeObject": "Object"})
        assert len(one["rows"]) == 1 and one["rows"][0]["object"]["spec"]["mode"] == "patch"
        kube.add_deployment("team-a", "chat-llm", 1)
        _, builtin, _ = await call(kube.url, "GET", "/apis/apps/v1/namespaces/team-a/deployments", accept=accept)
        assert [c["name"] for c in builtin["columnDefinitions"]] == ["Name", "Age"]
        plain = crd(columns=False)
        plain["metadata"]["name"] = f"others.{GROUP}"
        plain["spec"]["names"] = {"plural": "others", "kind": "Other"}
        await with_crd(kube, plain)
        _, none, _ = await call(kube.url, "GET", f"/apis/{GROUP}/{VERSION}/namespaces/team-a/others", accept=accept)
        assert [c["name"] for c in none["columnDefinitions"]] == ["Name", "Age"] and none["rows"] == []


def test_jsonpath_and_ages() -> None:
    obj = {"a": {"b": [{"c": 1, "t": "x"}, {"c": 2, "t": "y"}]}}
    assert jsonpath(obj, ".a.b[0].c") == [1]
    assert jsonpath(obj, ".a.b[*].c") == [1, 2]
    assert jsonpath(obj, '.a.b[?(@.t=="y")].c') == [2]
    assert jsonpath(obj, "{.a.b[-1].t}") == ["y"]
    assert jsonpath(obj, ".a.missing") == []
    assert [human_duration(s) for s in (5, 150, 3600, 7 * 3600 + 60, 30 * 3600, 3 * 86400, 400 * 86400)] == [
        "5s", "2m30s", "60m", "7h1m", "30h", "3d", "400d"]


# ------------------------------------------------------------------------------------------------ kubectl


def kubectl(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(home / "kubeconfig")}
    return subprocess.run(["kubectl", "--cache-dir", str(home / "cache"), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


async def test_kubectl_apply_get_and_delete_custom_resources(tmp_path: Path) -> None:
    async with KubeStandIn() as kube:
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd()))
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy(mode="patch")))

        async def run(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(kubectl, tmp_path, *args)

        done = await run("apply", "-f", str(tmp_path / "crd.yaml"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"customresourcedefinition.apiextensions.k8s.io/{PLURAL}.{GROUP} created"
        done = await run("apply", "-f", str(tmp_path / "policy.yaml"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"scalingpolicy.{GROUP}/chat created"
        created = [r for r in kube.requests if r.method == "POST" and r.path == BASE]
        assert created and created[-1].query.get("fieldValidation") == "Strict"
        stored = kube.get_object(GROUP, VERSION, PLURAL, "team-a", "chat")
        assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
        # a change is a patch of the live object
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy(mode="metrics", maxReplicas=12)))
        done = await run("apply", "-f", str(tmp_path / "policy.yaml"))
        assert done.returncode == 0 and done.stdout.strip() == f"scalingpolicy.{GROUP}/chat configured", done.stderr
        assert any(r.method == "PATCH" and r.path == f"{BASE}/chat" for r in kube.requests)
        assert kube.get_object(GROUP, VERSION, PLURAL, "team-a", "chat")["spec"]["maxReplicas"] == 12
        done = await run("get", "scalingpolicies", "-n", "team-a")
        assert done.returncode == 0, done.stderr
        header, row = done.stdout.splitlines()
        assert header.split() == ["NAME", "TARGET", "MIN", "READY", "AGE"]
        assert row.split()[:3] == ["chat", "chat-llm", "1"] and len(row.split()) == 4  # READY: null, shown blank
        done = await run("get", "sp", "-n", "team-a", "-o", "wide")
        assert done.stdout.splitlines()[0].split() == ["NAME", "TARGET", "MIN", "READY", "MODE", "AGE"]
        done = await run("get", "scalingpolicy", "chat", "-n", "team-a", "-o", "yaml")
        assert done.returncode == 0, done.stderr
        assert yaml.safe_load(done.stdout)["spec"] == {"target": "chat-llm", "minReplicas": 1, "maxReplicas": 12, "mode": "metrics"}
        done = await run("get", "scalingpolicy", "chat", "-n", "team-a", "-o", "jsonpath={.spec.maxReplicas}")
        assert done.stdout == "12"
        # invalid: the apiserver's text, through kubectl
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(policy(name="bad", minReplicas=-1)))
        done = await run("apply", "-f", str(tmp_path / "bad.yaml"))
        assert done.returncode == 1
        assert ('The ScalingPolicy "bad" is invalid: spec.minReplicas: Invalid value: -1: '
                "spec.minReplicas in body should be greater than or equal to 0") in done.stderr
        (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(policy(name="odd", foo=1)))
        done = await run("apply", "-f", str(tmp_path / "unknown.yaml"))
        assert done.returncode == 1 and 'unknown field "spec.foo"' in done.stderr
        assert kube.get_object(GROUP, VERSION, PLURAL, "team-a", "odd") is None
        done = await run("delete", "-f", str(tmp_path / "policy.yaml"))
        assert done.returncode == 0 and done.stdout.strip() == f'scalingpolicy.{GROUP} "chat" deleted', done.stderr
        assert kube.get_object(GROUP, VERSION, PLURAL, "team-a", "chat") is None
        done = await run("delete", "-f", str(tmp_path / "crd.yaml"))
        assert done.returncode == 0, done.stderr
        assert f"{GROUP}" not in {g for g, _, _ in kube.resources}
