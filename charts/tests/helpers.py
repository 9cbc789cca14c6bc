"""Shared helpers of the chart and manifest tests: rendering with Helm's own
engine, Kubernetes schema validation, object look-ups and the paymesh binaries.

Nothing here skips a test quietly: a missing tool or binary is an error that
says what to install or build.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parents[1]
CHART = REPO / "charts" / "paymesh"
K8S = REPO / "k8s"
VALUES_DIR = TESTS / "values"
CRD_SCHEMAS = TESTS / "schemas"

# The newest Kubernetes release whose schemas kubernetes-validate ships.
KUBE_VERSION = "1.37.0"

RELEASE = "paymesh"
NAMESPACE = "payments"

# The demo client of values.yaml: key and its SHA-256.
DEMO_KEY = "sk_demo_paymesh"
DEMO_KEY_SHA256 = "08c74fd058754a0d59fbcd2ea7d0bf29f25b16cfed4d05e765ed7208643a8f49"

# The client of the existing-secret value set: key and its SHA-256.
OPS_KEY = "sk_ops_example"
OPS_KEY_SHA256 = "61f81905c0aefd23a8d58e134db363ee371e7598368b2ee2dff6634f4be05911"

BINARIES = (
    "paymesh-sidecar",
    "paymesh-app",
    "paymesh-telemetryd",
    "paymesh-orchestrator",
    "paymeshctl",
)

# The CRD kinds the chart may render, validated against the subsets of their
# CRD schemas kept in schemas/ (kubernetes-validate knows built-in kinds only).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}


# --------------------------------------------------------------------------
# values


def load_values(name: str) -> dict[str, Any]:
    """A value set from values/ (`default` is the chart's own defaults: {})."""
    if name == "default":
        return {}
    with open(VALUES_DIR / f"{name}.yaml") as f:
        return yaml.safe_load(f) or {}


VALUE_SETS = ("default", "tls", "everything", "existing-secret")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`, maps recursively, lists replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------
# rendering


class Rendered:
    """The objects of one render, with look-ups by kind and name."""

    def __init__(self, manifests: dict[str, str]):
        self.manifests = manifests
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind}{' ' + name if name else ''}, found "
            f"{[o['metadata']['name'] for o in self.of_kind(kind)]}"
        )
        return found[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """Render the chart with Helm's engine (install semantics, no cluster)."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    return Rendered(manifests)


def chart_defaults() -> dict[str, Any]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.values


def fullname(name: str = RELEASE) -> str:
    return name if "paymesh" in name else f"{name}-paymesh"


# --------------------------------------------------------------------------
# validation


def validate_object(obj: dict[str, Any]) -> None:
    """Validate one object against Kubernetes' OpenAPI schemas in strict mode
    (unknown fields are errors), or against the CRD subset for CRD kinds."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_KINDS:
        with open(CRD_SCHEMAS / CRD_KINDS[key]) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator(schema).validate(obj)
        return
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(f"no schema to validate {key}: {e.message}") from None
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata'].get('name')} is invalid for Kubernetes {KUBE_VERSION}: {path}: {e.message}"
        ) from None


def validate_all(objects: Iterable[dict[str, Any]]) -> int:
    count = 0
    for obj in objects:
        validate_object(obj)
        count += 1
    return count


def kube_versions_shipped() -> list[str]:
    return kv_utils.all_versions()


# --------------------------------------------------------------------------
# objects


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def make_secret(name: str, data: dict[str, str], namespace: str = NAMESPACE, type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


# --------------------------------------------------------------------------
# binaries and ports


def bin_dir() -> Path:
    return Path(os.environ.get("PAYMESH_BIN_DIR") or REPO / "target" / "debug").resolve()


def require_binary(name: str) -> Path:
    """The path of a paymesh binary; a missing one fails the test, loudly."""
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise AssertionError(
            f"{name} not found at {path}: build the workspace first "
            f"(cargo build --workspace --bins) or point PAYMESH_BIN_DIR at the binaries"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


# --------------------------------------------------------------------------
# TLS material


def make_tls(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make test certificates (apt-get install openssl)"
    d = directory
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=paymesh test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    for name, ext in (
        ("tls", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN=paymesh test {name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
        )
    return {p.stem + p.suffix: p for p in d.iterdir()}


def tls_secret(name: str, tls_dir: Path, namespace: str = NAMESPACE) -> dict[str, Any]:
    return make_secret(
        name,
        {
            "tls.crt": (tls_dir / "tls.crt").read_text(),
            "tls.key": (tls_dir / "tls.key").read_text(),
            "ca.crt": (tls_dir / "ca.crt").read_text(),
        },
        namespace=namespace,
        type_="kubernetes.io/tls",
    )


def operator_objects(value_set: str, tls_dir: Path) -> list[dict[str, Any]]:
    """What the operator creates next to the release for a value set: the TLS
    Secret, or the existing clients and admin token Secrets."""
    if value_set == "tls":
        return [tls_secret("paymesh-tls", tls_dir)]
    if value_set == "existing-secret":
        clients = {
            "clients": [{"id": "ops", "api_key_sha256": OPS_KEY_SHA256, "rate": {"per_second": 50, "burst": 100}}]
        }
        return [
            make_secret("payments-api-clients", {"paymesh-clients.yaml": yaml.safe_dump(clients)}),
            make_secret("payments-admin-token", {"token": "operator-managed-admin-token-0123456789\n"}),
        ]
    return []
