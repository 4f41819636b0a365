"""Where the Kubernetes API is and who we are to it, resolved as kubectl and client-go resolve it.

Order, as client-go's: ``--kubeconfig FILE``; else ``$KUBECONFIG`` (a list of files joined by
``os.pathsep``, merged as client-go merges them: the first file that sets a name or the current context
wins); else, in a pod (``KUBERNETES_SERVICE_HOST`` set), the service account (the token file is re-read
every minute, as client-go re-reads bound, rotating tokens); else ``~/.kube/config``. ``--context``
picks a context over ``current-context`` (and so needs a kubeconfig).

Supported in a kubeconfig: a cluster's ``server``, ``certificate-authority(-data)``,
``insecure-skip-tls-verify`` and ``tls-server-name``; a user's ``token``, ``tokenFile``,
``client-certificate(-data)``/``client-key(-data)``, ``username``/``password``, and ``exec``
credential plugins (``client.authentication.k8s.io`` v1 and v1beta1: the plugin runs when no
credential is cached or the cached one expired, never interactively). The removed ``auth-provider``
plugins and ``proxy-url`` are refused with a message saying what to use instead.

Why not a library: the official ``kubernetes`` package (about 120 MB with its generated models) was
installed only for this; ``lightkube`` and ``kr8s`` resolve kubeconfigs but hand back ``httpx``
authentication objects, and the client here is ``aiohttp``. What kubeconfig resolution needs is a
YAML read and the exec-credential protocol, both short and specified.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from autoscaler.errors import ConfigurationError

__all__ = ["Endpoint", "KubeconfigError", "resolve"]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_S = 60.0
EXEC_TIMEOUT_S = 60.0
EXPIRY_MARGIN_S = 10.0  # refresh an exec credential this long before it expires
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class KubeconfigError(ConfigurationError):
    """The Kubernetes configuration cannot be used: the message names the file, the entry and why."""


class TokenSource:
    """A bearer token that may change: fixed, re-read from a file, or from an exec plugin."""

    def token(self) -> str | None:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget what is cached (the API answered 401): the next :meth:`token` fetches it again."""


@dataclass
class FixedToken(TokenSource):
    value: str | None

    def token(self) -> str | None:
        return self.value


@dataclass
class FileToken(TokenSource):
    """A token file, re-read at most every ``TOKEN_REREAD_S`` (service-account tokens rotate)."""

    path: Path
    clock: Any = time.monotonic
    _value: str | None = None
    _read_at: float = -float("inf")

    def token(self) -> str | None:
        now = self.clock()
        if self._value is None or now - self._read_at >= TOKEN_REREAD_S:
            try:
                self._value = self.path.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                if self._value is None:
                    raise KubeconfigError(f"{self.path}: cannot read the token: {exc}") from None
            self._read_at = now
        return self._value

    def invalidate(self) -> None:
        self._read_at = -float("inf")


@dataclass
class ExecToken(TokenSource):
    """An exec credential plugin's token, cached until shortly before its ``expirationTimestamp``."""

    where: str
    spec: Mapping[str, Any]
    cluster: Mapping[str, Any] | None = None
    clock: Any = time.time
    _value: str | None = None
    _expires: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def token(self) -> str | None:
        with self._lock:
            fresh = self._value is not None and (
                self._expires is None or self.clock() < self._expires - EXPIRY_MARGIN_S
            )
            if not fresh:
                self._value, self._expires = self._run()
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value, self._expires = None, None

    def _run(self) -> tuple[str | None, float | None]:
        spec = self.spec
        api_version = spec.get("apiVersion", EXEC_API_VERSIONS[0])
        if api_version not in EXEC_API_VERSIONS:
            raise KubeconfigError(
                f"{self.where}.exec.apiVersion = {api_version}: one of {', '.join(EXEC_API_VERSIONS)}"
            )
        command = spec.get("command")
        if not isinstance(command, str) or not command:
            raise KubeconfigError(f"{self.where}.exec.command: is required")
        args = [str(a) for a in spec.get("args") or []]
        env = dict(os.environ)
        for item in spec.get("env") or []:
            env[str(item["name"])] = str(item["value"])
        info: dict[str, Any] = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
        if spec.get("provideClusterInfo") and self.cluster is not None:
            info["spec"]["cluster"] = dict(self.cluster)
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        try:
            done = subprocess.run(
                [command, *args],
                env=env,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=EXEC_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            hint = f" ({spec['installHint']})" if spec.get("installHint") else ""
            raise KubeconfigError(f"{self.where}.exec: cannot run {command}: {exc}{hint}") from None
        if done.returncode != 0:
            raise KubeconfigError(
                f"{self.where}.exec: {command} exited {done.returncode}: {done.stderr.strip()[-500:]}"
            )
        try:
            printed = json.loads(done.stdout)
            if printed.get("apiVersion") not in (None, api_version):
                raise KubeconfigError(
                    f"{self.where}.exec: {command} answered {printed.get('apiVersion')}, asked for {api_version}"
                )
            status = printed["status"]
            token = status.get("token")
            expiry = status.get("expirationTimestamp")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KubeconfigError(f"{self.where}.exec: {command} printed no ExecCredential with a status") from None
        if not isinstance(token, str) or not token:
            raise KubeconfigError(
                f"{self.where}.exec: {command}: the ExecCredential has no status.token "
                "(client certificates from exec plugins are not supported)"
            )
        expires = None
        if expiry:
            try:
                expires = datetime.fromisoformat(str(expiry).replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise KubeconfigError(f"{self.where}.exec: expirationTimestamp = {expiry}: not RFC 3339") from None
        return token, expires


@dataclass(frozen=True)
class Endpoint:
    """What a client needs: where, how to trust it, and who we are."""

    host: str
    tokens: TokenSource | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None
    basic: tuple[str, str] | None = None
    source: str = ""


# ------------------------------------------------------------------------------------------- loading


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path}: a kubeconfig is a mapping, not a {type(data).__name__}")
    return data


def _named(data: Mapping[str, Any], key: str, path: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    out: dict[str, tuple[dict[str, Any], Path]] = {}
    entries = data.get(key) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"{path}: {key} must be a list")
    inner = key[:-1]  # clusters -> cluster
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise KubeconfigError(f"{path}: {key}: every entry needs a name")
        body = entry.get(inner) or {}
        if not isinstance(body, dict):
            raise KubeconfigError(f"{path}: {key}[{entry['name']}].{inner} must be a mapping")
        out.setdefault(entry["name"], (body, path))
    return out


def _flag(entry: Mapping[str, Any], key: str, where: str) -> bool:
    """A YAML boolean, strictly: client-go refuses a quoted "false" (a string would read as true here)."""
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise KubeconfigError(f"{where}.{key} = {value!r}: must be true or false (unquoted)")
    return value


def _text(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"{where}.{key} = {value!r}: must be a string")
    return value


def _remove(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _file_or_data(entry: Mapping[str, Any], key: str, base: Path, where: str) -> str | None:
    """A file path (relative to the kubeconfig's folder) or ``key-data`` written to a private file."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            raw = base64.b64decode(str(data), validate=True)
        except ValueError:
            raise KubeconfigError(f"{where}.{key}-data: not base64") from None
        handle, name = tempfile.mkstemp(prefix="kubeconfig-", suffix=".pem")
        atexit.register(_remove, name)  # keys must not outlive the process
        os.fchmod(handle, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(handle, "wb") as out:
            out.write(raw)
        return name
    value = entry.get(key)
    if not value:
        return None
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise KubeconfigError(f"{where}.{key} = {value}: no such file")
    return str(path)


def _from_files(paths: list[Path], context: str | None) -> Endpoint:
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    contexts: dict[str, tuple[dict[str, Any], Path]] = {}
    current: str | None = None
    for path in paths:
        data = _read(path)
        for key, into in (("clusters", clusters), ("users", users), ("contexts", contexts)):
            for entry_name, entry in _named(data, key, path).items():
                into.setdefault(entry_name, entry)
        given = data.get("current-context") or None
        if given is not None and not isinstance(given, str):
            raise KubeconfigError(f"{path}: current-context = {given!r}: must be a context's name")
        current = current or given
    shown = os.pathsep.join(str(p) for p in paths)
    chosen = context or current
    if not chosen:
        raise KubeconfigError(
            f"{shown}: no current-context; give --context (contexts: {', '.join(contexts) or 'none'})"
        )
    name = chosen
    if name not in contexts:
        raise KubeconfigError(f"{shown}: no context {name!r} (contexts: {', '.join(contexts) or 'none'})")
    ctx, _ = contexts[name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    for key, value in (("cluster", cluster_name), ("user", user_name)):
        if value is not None and not isinstance(value, str):
            raise KubeconfigError(f"{shown}: contexts[{name}].{key} = {value!r}: must be a name")
    if cluster_name not in clusters:
        raise KubeconfigError(f"{shown}: context {name!r} names cluster {cluster_name!r}, which is not defined")
    cluster, cluster_file = clusters[cluster_name]
    where = f"{cluster_file}: clusters[{cluster_name}]"
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{where}.server = {server!r}: an https:// (or http://) URL is required")
    if cluster.get("proxy-url"):
        raise KubeconfigError(f"{where}.proxy-url: not supported; set HTTPS_PROXY instead")
    user: dict[str, Any] = {}
    user_file = cluster_file
    if user_name is not None:
        if user_name not in users:
            raise KubeconfigError(f"{shown}: context {name!r} names user {user_name!r}, which is not defined")
        user, user_file = users[user_name]
    who = f"{user_file}: users[{user_name}]"
    if user.get("auth-provider"):
        raise KubeconfigError(
            f"{who}.auth-provider: removed from Kubernetes (1.26); use an exec plugin "
            "(gke-gcloud-auth-plugin, kubelogin) instead"
        )
    tokens: TokenSource | None = None
    if user.get("exec"):
        exec_spec = user["exec"]
        if not isinstance(exec_spec, dict):
            raise KubeconfigError(f"{who}.exec must be a mapping")
        command = exec_spec.get("command")
        if isinstance(command, str) and "/" in command and not Path(command).is_absolute():
            exec_spec = {**exec_spec, "command": str(user_file.parent / command)}  # as client-go resolves it
        env_list = exec_spec.get("env") or []
        if not isinstance(env_list, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("value"), str)
            for e in env_list
        ):
            raise KubeconfigError(f"{who}.exec.env: must be a list of {{name, value}} strings")
        tokens = ExecToken(
            who,
            exec_spec,
            {
                "server": server,
                **(
                    {"certificate-authority-data": cluster["certificate-authority-data"]}
                    if cluster.get("certificate-authority-data")
                    else {}
                ),
            },
        )
    elif user.get("token"):
        tokens = FixedToken(str(user["token"]))
    elif user.get("tokenFile"):
        token_file = Path(str(user["tokenFile"])).expanduser()
        tokens = FileToken(token_file if token_file.is_absolute() else user_file.parent / token_file)
    basic = None
    if user.get("username") and user.get("password"):
        basic = (str(user["username"]), str(user["password"]))
    base = user_file.parent
    cert = _file_or_data(user, "client-certificate", base, who)
    key_file = _file_or_data(user, "client-key", base, who)
    if bool(cert) != bool(key_file):
        raise KubeconfigError(f"{who}: client-certificate and client-key go together")
    return Endpoint(
        host=server.rstrip("/"),
        tokens=tokens,
        ca_file=_file_or_data(cluster, "certificate-authority", cluster_file.parent, where),
        cert_file=cert,
        key_file=key_file,
        verify=not _flag(cluster, "insecure-skip-tls-verify", where),
        server_name=_text(cluster, "tls-server-name", where),
        basic=basic,
        source=f"{shown} (context {name})",
    )


def _in_cluster(env: Mapping[str, str], account: Path) -> Endpoint:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError(
            "no Kubernetes configuration: no --kubeconfig, no $KUBECONFIG, no ~/.kube/config, and not in a pod "
            "(KUBERNETES_SERVICE_HOST is unset)"
        )
    token = account / "token"
    if not token.is_file():
        raise KubeconfigError(f"in a pod, but {token} is missing: is automountServiceAccountToken false?")
    host = f"[{host}]" if ":" in host else host
    ca = account / "ca.crt"
    return Endpoint(
        host=f"https://{host}:{port}",
        tokens=FileToken(token),
        ca_file=str(ca) if ca.is_file() else None,
        source="in-cluster service account",
    )


def resolve(
    kubeconfig: str | None = None,
    *,
    context: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    service_account: Path = SERVICE_ACCOUNT,
) -> Endpoint:
    """The endpoint, in kubectl's order (see the module's docstring)."""
    env = os.environ if env is None else env
    if kubeconfig:
        return _from_files([Path(kubeconfig).expanduser()], context)
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing = [p for p in listed if p.exists()]  # client-go skips listed files that do not exist
        if not existing:
            raise KubeconfigError(f"$KUBECONFIG={env['KUBECONFIG']}: none of these files exists")
        return _from_files(existing, context)
    default = (home if home is not None else Path.home()) / ".kube" / "config"
    if env.get("KUBERNETES_SERVICE_HOST") and not context:  # in a pod: its service account
        try:
            return _in_cluster(env, service_account)
        except KubeconfigError:
            if not default.exists():  # no token mounted and nothing else: say why in-cluster failed
                raise
    if default.exists():
        return _from_files([default], context)
    if context:
        raise KubeconfigError(f"--context {context}: no kubeconfig to find it in ({default} does not exist)")
    return _in_cluster(env, service_account)
