"""The Kubernetes API stand-in keeps real semantics, checked with the official ``kubernetes`` client over
real HTTP: discovery, the scale subresource (kind Scale), resourceVersion bumps and 409 on a stale one,
404/422/429 Status objects, Leases, Events, label selectors, reviews.
"""

from __future__ import annotations

import asyncio

import kubernetes
import pytest
from kube_standin import KubeStandIn
from kubernetes.client.rest import ApiException


def client_for(url: str) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    cfg.host = url
    return kubernetes.client.ApiClient(cfg)


async def test_scale_subresource_and_optimistic_concurrency() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        apps = kubernetes.client.AppsV1Api(client_for(kube.url))
        scale = await asyncio.to_thread(apps.read_namespaced_deployment_scale, "chat-llm", "team-a")
        assert scale.kind == "Scale" and scale.spec.replicas == 2 and scale.status.selector == "app=chat-llm"
        stale = scale.metadata.resource_version
        scale.spec.replicas = 5
        done = await asyncio.to_thread(apps.replace_namespaced_deployment_scale, "chat-llm", "team-a", scale)
        assert done.spec.replicas == 5 and done.metadata.resource_version != stale
        scale.metadata.resource_version = stale
        scale.spec.replicas = 7
        with pytest.raises(ApiException) as err:
            await asyncio.to_thread(apps.replace_namespaced_deployment_scale, "chat-llm", "team-a", scale)
        assert err.value.status == 409 and "the object has been modified" in err.value.body
        assert kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 5
        patched = await asyncio.to_thread(
            apps.patch_namespaced_deployment_scale, "chat-llm", "team-a", {"spec": {"replicas": 3}}
        )
        assert patched.spec.replicas == 3
        with pytest.raises(ApiException) as err:
            await asyncio.to_thread(
                apps.patch_namespaced_deployment_scale, "chat-llm", "team-a", {"spec": {"replicas": -1}}
            )
        assert err.value.status == 422
        with pytest.raises(ApiException) as err:
            await asyncio.to_thread(apps.read_namespaced_deployment_scale, "nope", "team-a")
        assert err.value.status == 404 and '"reason":"NotFound"' in err.value.body.replace(" ", "")


async def test_leases_events_pods_and_faults() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 3, ready=2)
        api = client_for(kube.url)
        coord = kubernetes.client.CoordinationV1Api(api)
        lease = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name="leader"),
            spec=kubernetes.client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
        )
        created = await asyncio.to_thread(coord.create_namespaced_lease, "ops", lease)
        with pytest.raises(ApiException) as err:
            await asyncio.to_thread(coord.create_namespaced_lease, "ops", lease)
        assert err.value.status == 409
        created.spec.holder_identity = "b"
        await asyncio.to_thread(coord.replace_namespaced_lease, "leader", "ops", created)
        with pytest.raises(ApiException) as err:  # same (now stale) resourceVersion
            await asyncio.to_thread(coord.replace_namespaced_lease, "leader", "ops", created)
        assert err.value.status == 409
        core = kubernetes.client.CoreV1Api(api)
        pods = await asyncio.to_thread(core.list_namespaced_pod, "team-a", label_selector="app=chat-llm")
        ready = [p for p in pods.items if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
        assert len(pods.items) == 3 and len(ready) == 2
        event = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(name="chat.1"),
            reason="ScaleUp",
            message="m",
            involved_object=kubernetes.client.V1ObjectReference(kind="Deployment", name="chat-llm", namespace="team-a"),
        )
        await asyncio.to_thread(core.create_namespaced_event, "team-a", event)
        assert kube.list_objects("", "v1", "events", "team-a")[0]["reason"] == "ScaleUp"
        kube.fail_next("POST", r"/events$", 429, retry_after=1)
        with pytest.raises(ApiException) as err:
            await asyncio.to_thread(core.create_namespaced_event, "team-a", event)
        assert err.value.status == 429 and err.value.headers["Retry-After"] == "1"
        assert '"reason": "TooManyRequests"' in err.value.body
        with pytest.raises(ApiException) as err:
            await asyncio.to_thread(core.list_namespaced_pod, "team-a", label_selector="app in (a")
        assert err.value.status == 400


async def test_reviews_follow_the_tests_rules() -> None:
    async with KubeStandIn() as kube:
        kube.access_rule = lambda spec: spec.get("user") == "hpa"
        kube.tokens["t0k"] = {"username": "alice", "groups": ["devs"]}
        authz = kubernetes.client.AuthorizationV1Api(client_for(kube.url))
        review = kubernetes.client.V1SubjectAccessReview(spec=kubernetes.client.V1SubjectAccessReviewSpec(user="hpa"))
        assert (await asyncio.to_thread(authz.create_subject_access_review, review)).status.allowed is True
        review.spec.user = "mallory"
        assert (await asyncio.to_thread(authz.create_subject_access_review, review)).status.allowed is False
        authn = kubernetes.client.AuthenticationV1Api(client_for(kube.url))
        token_review = kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token="t0k"))
        result = await asyncio.to_thread(authn.create_token_review, token_review)
        assert result.status.authenticated and result.status.user.username == "alice"
