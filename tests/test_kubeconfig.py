"""Kubeconfig resolution without the ``kubernetes`` package (autoscaler/service/kubeconfig.py).

Case matrix:
  order       --kubeconfig | $KUBECONFIG (merged, first wins) | in-cluster | ~/.kube/config | nothing
  context     current-context | --context | unknown context / cluster / user named
  user        token | tokenFile | client cert + key (files relative to the kubeconfig, and -data) |
              basic | exec (cached until expiry, refreshed, errors) | auth-provider refused
  end to end  an exec plugin's token reaches the API stand-in over real HTTP
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from kube_standin import KubeStandIn

from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.kubeconfig import ExecToken, KubeconfigError, resolve


def kubeconfig(path: Path, *, server: str = "https://api.example:6443", user: dict | None = None,
               current: str | None = "", cluster_extra: dict | None = None, name: str = "main") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name if current == "" else current,
        "clusters": [{"name": name, "cluster": {"server": server, **(cluster_extra or {})}}],
        "users": [{"name": name, "user": user if user is not None else {"token": f"token-{name}"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }))
    return path


def test_explicit_file_then_kubeconfig_env_then_in_cluster_then_home(tmp_path: Path) -> None:
    explicit = kubeconfig(tmp_path / "explicit", name="explicit")
    first = kubeconfig(tmp_path / "first", name="first", server="https://first:6443")
    second = kubeconfig(tmp_path / "second", name="second")
    home = tmp_path / "home"
    kubeconfig((home / ".kube").mkdir(parents=True) or home / ".kube" / "config", name="home")
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "absent"), str(first), str(second)])}

    assert resolve(str(explicit), env=env, home=home).tokens.token() == "token-explicit"  # type: ignore[union-attr]
    merged = resolve(env=env, home=home)  # the first file's current-context wins; absent files skipped
    assert merged.host == "https://first:6443" and merged.tokens.token() == "token-first"  # type: ignore[union-attr]
    assert resolve(env=env, home=home, context="second").tokens.token() == "token-second"  # type: ignore[union-attr]
    assert resolve(env={}, home=home).tokens.token() == "token-home"  # type: ignore[union-attr]

    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("sa-token\n")
    (account / "ca.crt").write_text("x")
    in_pod = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    pod = resolve(env=in_pod, home=home, service_account=account)  # a pod's account before ~/.kube/config
    assert pod.host == "https://[fd00::1]:443" and pod.ca_file == str(account / "ca.crt")
    assert pod.tokens.token() == "sa-token"  # type: ignore[union-attr]
    with pytest.raises(KubeconfigError, match="not in a pod"):
        resolve(env={}, home=tmp_path / "nohome", service_account=account)
    with pytest.raises(KubeconfigError, match="none of these files exists"):
        resolve(env={"KUBECONFIG": str(tmp_path / "absent")}, home=home)


def test_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c")
    with pytest.raises(KubeconfigError, match=r"no context 'nope' \(contexts: main\)"):
        resolve(str(path), context="nope")
    with pytest.raises(KubeconfigError, match="no current-context; give --context"):
        resolve(str(kubeconfig(tmp_path / "d", current=None)))
    with pytest.raises(KubeconfigError, match=r"server = 'api:6443': an https:// \(or http://\) URL"):
        resolve(str(kubeconfig(tmp_path / "e", server="api:6443")))
    with pytest.raises(KubeconfigError, match="auth-provider: removed from Kubernetes"):
        resolve(str(kubeconfig(tmp_path / "f", user={"auth-provider": {"name": "gcp"}})))
    with pytest.raises(KubeconfigError, match=r"client-certificate = missing.pem: no such file"):
        resolve(str(kubeconfig(tmp_path / "g", user={"client-certificate": "missing.pem", "client-key": "k"})))
    (tmp_path / "h").write_text("- a list")
    with pytest.raises(KubeconfigError, match="a kubeconfig is a mapping"):
        resolve(str(tmp_path / "h"))


def test_certificates_from_files_relative_to_the_kubeconfig_and_from_data(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "me.pem").write_text("cert")
    (tmp_path / "certs" / "me.key").write_text("key")
    path = kubeconfig(tmp_path / "c", user={"client-certificate": "certs/me.pem", "client-key": "certs/me.key"},
                      cluster_extra={"certificate-authority-data": base64.b64encode(b"CA PEM").decode(),
                                     "tls-server-name": "kubernetes.default"})
    endpoint = resolve(str(path))
    assert endpoint.cert_file == str(tmp_path / "certs" / "me.pem") and endpoint.key_file == str(
        tmp_path / "certs" / "me.key")
    assert endpoint.ca_file is not None and Path(endpoint.ca_file).read_bytes() == b"CA PEM"
    assert stat.S_IMODE(os.stat(endpoint.ca_file).st_mode) == 0o600
    assert endpoint.server_name == "kubernetes.default" and endpoint.tokens is None
    insecure = resolve(str(kubeconfig(tmp_path / "i", cluster_extra={"insecure-skip-tls-verify": True})))
    assert insecure.verify is False


def _plugin(tmp_path: Path, *, expiry: str | None, code: int = 0) -> tuple[dict, Path]:
    calls = tmp_path / "calls"
    script = tmp_path / "plugin.py"
    script.write_text(f"""
import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(info) + "\\n")
if {code}:
    print("login required", file=sys.stderr)
    sys.exit({code})
n = sum(1 for _ in open({str(calls)!r}))
status = {{"token": f"exec-{{n}}-" + os.environ["EXTRA"]}}
if {expiry!r}:
    status["expirationTimestamp"] = {expiry!r}
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}}))
""")
    spec = {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(script)],
            "env": [{"name": "EXTRA", "value": "x"}], "provideClusterInfo": True, "interactiveMode": "Never"}
    return spec, calls


def test_exec_plugin_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    spec, calls = _plugin(tmp_path, expiry="2030-01-01T00:00:00Z")
    now = [1_800_000_000.0]  # 2027: before the expiry
    source = ExecToken("c: users[me]", spec, {"server": "https://api:6443"}, clock=lambda: now[0])
    assert source.token() == "exec-1-x" and source.token() == "exec-1-x"
    info = json.loads(calls.read_text().splitlines()[0])
    assert info["spec"] == {"interactive": False, "cluster": {"server": "https://api:6443"}}
    now[0] = 1_893_456_000.0 - 5  # within the margin before 2030-01-01: refreshed
    assert source.token() == "exec-2-x"
    never = ExecToken("c", _plugin(tmp_path / "n", expiry=None)[0] if (tmp_path / "n").mkdir() is None else {})
    assert never.token() == never.token() == "exec-1-x"  # no expiry: run once


def test_exec_plugin_failures_are_clear(tmp_path: Path) -> None:
    spec, _ = _plugin(tmp_path, expiry=None, code=3)
    with pytest.raises(KubeconfigError, match=r"exited 3: login required"):
        ExecToken("c: users[me]", spec).token()
    with pytest.raises(KubeconfigError, match=r"cannot run /nonexistent/plugin.*\(install it\)"):
        ExecToken("c: users[me]", {"command": "/nonexistent/plugin", "installHint": "install it"}).token()
    with pytest.raises(KubeconfigError, match=r"apiVersion = client\.authentication\.k8s\.io/v1alpha1"):
        ExecToken("c", {"command": "x", "apiVersion": "client.authentication.k8s.io/v1alpha1"}).token()


async def test_an_exec_plugin_token_reaches_the_api(tmp_path: Path) -> None:
    spec, _ = _plugin(tmp_path, expiry="2999-01-01T00:00:00Z")
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        path = kubeconfig(tmp_path / "c", server=kube.url, user={"exec": spec})
        client = KubeClient(KubeConfig.load(str(path)))
        try:
            scale = await client.request("GET", "/apis/apps/v1/namespaces/team-a/deployments/chat-llm/scale")
        finally:
            await client.close()
    assert scale["spec"]["replicas"] == 2
    assert [r.user for r in kube.requests] == ["Bearer exec-1-x"]


def test_kubeconfig_values_are_read_as_strictly_as_client_go(tmp_path: Path) -> None:
    quoted = kubeconfig(tmp_path / "q", cluster_extra={"insecure-skip-tls-verify": "false"})
    with pytest.raises(KubeconfigError, match=r"insecure-skip-tls-verify = 'false': must be true or false"):
        resolve(str(quoted))  # a quoted "false" once read as true: verification off
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "token").write_text("from-file\n")
    relative = kubeconfig(tmp_path / "sub" / "config", user={"tokenFile": "token"})
    assert resolve(str(relative)).tokens.token() == "from-file"  # type: ignore[union-attr]
    odd = tmp_path / "odd"
    odd.write_text(yaml.safe_dump({"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": ["x"]}}],
                                   "clusters": [], "users": []}))
    with pytest.raises(KubeconfigError, match=r"contexts\[c\]\.cluster = \['x'\]: must be a name"):
        resolve(str(odd))
    with pytest.raises(KubeconfigError, match=r"exec\.env: must be a list of \{name, value\} strings"):
        resolve(str(kubeconfig(tmp_path / "e", user={"exec": {"command": "x", "env": ["A=1"]}})))


def test_in_a_pod_without_a_token_the_home_kubeconfig_is_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    kubeconfig(home / ".kube" / "config", name="home")
    in_pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    endpoint = resolve(env=in_pod, home=home, service_account=tmp_path / "no-account")
    assert endpoint.tokens.token() == "token-home"  # type: ignore[union-attr]


async def test_a_401_fetches_a_fresh_exec_credential_once(tmp_path: Path) -> None:
    spec, calls = _plugin(tmp_path, expiry="2999-01-01T00:00:00Z")
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.fail_next("GET", r"/chat-llm/scale$", 401)  # the cached token was revoked
        client = KubeClient(KubeConfig.load(str(kubeconfig(tmp_path / "c", server=kube.url, user={"exec": spec}))))
        try:
            await client.request("GET", "/apis/apps/v1/namespaces/team-a/deployments/chat-llm/scale")
        finally:
            await client.close()
    assert [r.user for r in kube.requests] == ["Bearer exec-1-x", "Bearer exec-2-x"]
    assert len(calls.read_text().splitlines()) == 2


async def test_a_slow_exec_plugin_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    import asyncio

    script = tmp_path / "slow.py"
    script.write_text("import json, time\ntime.sleep(1.0)\nprint(json.dumps({'status': {'token': 'slow'}}))\n")
    source = ExecToken("c", {"command": sys.executable, "args": [str(script)]})
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        client = KubeClient(KubeConfig(host=kube.url, token_refresh=source.token, retries=0))
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                await asyncio.sleep(0.05)
                beats += 1

        beating = asyncio.create_task(heartbeat())
        try:
            await client.request("GET", "/apis/apps/v1/namespaces/team-a/deployments/chat-llm/scale")
        finally:
            beating.cancel()
            await client.close()
    assert beats >= 10  # the loop kept running (the lease's renewals, the probes) while the plugin ran
