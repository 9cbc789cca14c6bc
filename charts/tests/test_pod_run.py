"""The pod run: the rendered gateway pod's containers started as local
processes in the pod's order, with their commands, arguments and environment,
their volumes in temp dirs; the demo orchestrator from the chart beside it; a
charge sent through the Service's target port; the chart's `helm test` Pod;
then a stop in Kubernetes' order. Ports are free local ports, set through
values. The app hop is the default Unix socket, and loopback TCP in the
`tcp` variant."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

import helpers
from helpers import NAMESPACE
from podrun import Pod, PodError, service_targets

pytestmark = pytest.mark.binaries

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "tls": helpers.load_values("tls"),
    "existing-secret": helpers.load_values("existing-secret"),
    "tcp": {"app": {"transport": "tcp"}},
}
OPERATOR_OBJECTS = {"plain": "default", "tls": "tls", "existing-secret": "existing-secret", "tcp": "default"}
KEYS = {"plain": helpers.DEMO_KEY, "tls": helpers.DEMO_KEY, "existing-secret": helpers.OPS_KEY, "tcp": helpers.DEMO_KEY}
CHARGE = {"amount": 1000, "currency": "usd", "source": "tok_visa", "description": "pod run"}


def pod_run_values(public: int, admin: int, app: int, orchestrator: int) -> dict[str, Any]:
    return {
        "logFormat": "text",
        "terminationGracePeriodSeconds": 15,
        "sidecar": {
            "port": public,
            "adminPort": admin,
            "listenHost": "127.0.0.1",
            "adminHost": "127.0.0.1",
            "config": {
                "limits": {"drain_timeout": "3s"},
                # No etcd here: the defaults decide, and every charge takes
                # the orchestration path, through the demo orchestrator.
                "migration": {"etcd_endpoints": [], "defaults": {"charge": 100, "refund": 0, "disbursement": 0}},
            },
        },
        "app": {"port": app, "preStopSleepSeconds": 1},
        "orchestrator": {"enabled": True, "port": orchestrator, "listenHost": "127.0.0.1"},
        "service": {"port": public, "metricsPort": admin},
    }


def eventually(check: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (OSError, ValueError, AssertionError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


class Client:
    def __init__(self, port: int, tls_dir: Path | None = None, client_cert: bool = True):
        self.port = port
        self.ctx: ssl.SSLContext | None = None
        if tls_dir is not None:
            self.ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
            if client_cert:
                self.ctx.load_cert_chain(str(tls_dir / "client.crt"), str(tls_dir / "client.key"))

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        if self.ctx is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=10, context=self.ctx
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw
        finally:
            conn.close()


def admin_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pod_run(variant: str, tmp_path: Path, tls_dir: Path):
    for binary in helpers.BINARIES:
        helpers.require_binary(binary)
    public, admin, app, orchestrator = helpers.free_ports(4)
    values = helpers.deep_merge(pod_run_values(public, admin, app, orchestrator), VARIANTS[variant])
    rendered = helpers.render(values)
    objects = rendered.objects + helpers.operator_objects(OPERATOR_OBJECTS[variant], tls_dir)
    name = helpers.fullname()
    gateway = Pod(rendered.get("Deployment", name), objects, tmp_path / "gateway", helpers.bin_dir(), NAMESPACE)
    orch = Pod(
        rendered.get("Deployment", f"{name}-orchestrator"),
        objects,
        tmp_path / "orchestrator",
        helpers.bin_dir(),
        NAMESPACE,
    )

    # The Service's target port, resolved as kube-proxy would.
    svc_port = next(p["port"] for p in rendered.get("Service", name)["spec"]["ports"] if p["name"] != "metrics")
    target = service_targets(objects)[(name, svc_port)]
    assert target == public
    client = Client(target, tls_dir if variant == "tls" else None)
    key = KEYS[variant]

    try:
        orch.start()
        gateway.start()

        # The telemetry daemon writes where the sidecar reads.
        telemetry = gateway.volume_dirs["run"] / "telemetry.json"
        snapshot = eventually(lambda: json.loads(telemetry.read_text()), 10, "telemetry file written")
        assert "sampled_at_ms" in snapshot and "cpu_percent" in snapshot

        idem = str(uuid.uuid4())
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
        status, hdrs, raw = client.request("POST", "/v1/charges", CHARGE, headers)
        assert status == 201, f"POST /v1/charges: {status} {raw[:500]!r}"
        charge = json.loads(raw)
        assert charge["id"].startswith("ch_") and charge["amount"] == 1000 and charge["currency"] == "usd"
        assert hdrs.get("x-paymesh-route") == "orchestration", hdrs
        assert hdrs.get("x-request-id"), hdrs

        status, _, raw = client.request("POST", "/v1/charges", CHARGE, headers)
        assert status == 201 and json.loads(raw)["id"] == charge["id"], "an idempotent retry must replay"

        status, _, raw = client.request("POST", "/v1/charges", CHARGE, {"Idempotency-Key": str(uuid.uuid4())})
        assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error", raw

        if variant == "tls":
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
                Client(target, tls_dir, client_cert=False).request("GET", "/v1/charges/ch_x", None, headers)

        status, metrics = admin_get(admin, "/metrics")
        assert status == 200 and b"paymesh_requests_total" in metrics
        # The app serves where the sidecar dials: its socket, on no TCP port,
        # or loopback with the tcp transport.
        if variant == "tcp":
            socket.create_connection(("127.0.0.1", app), timeout=2).close()
            assert "app-socket" not in gateway.volume_dirs
        else:
            assert (gateway.volume_dirs["app-socket"] / "app.sock").is_socket()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", app), timeout=2)
        # The probes the kubelet would run: the app's `paymesh-app --probe`
        # (it listens on a socket or loopback only) and telemetryd's --check.
        for container, kinds in (("app", ("livenessProbe", "readinessProbe")), ("telemetryd", ("livenessProbe",))):
            c = gateway.running(container).container
            for kind in kinds:
                assert gateway.probe_once(c, c[kind]), f"{container} {kind} fails on a healthy pod"
        status, state = admin_get(admin, "/admin/state")
        assert status == 200
        json.loads(state)
        assert helpers.DEMO_KEY_SHA256.encode() not in state and helpers.OPS_KEY_SHA256.encode() not in state

        # `helm test`: the chart's test Pod asks a sidecar for its state.
        hook_pod = rendered.get("Pod", f"{name}-test-state")
        hook = Pod(hook_pod, objects, tmp_path / "helm-test", helpers.bin_dir(), NAMESPACE)
        hook.materialise_volumes()
        rc = hook.run_to_completion(hook_pod["spec"]["containers"][0], timeout=30)
        assert rc == 0, f"helm test pod failed ({rc}):\n{hook.logs()}"

        app_container = next(c for c in gateway.spec["containers"] if c["name"] == "app")

        def app_gone_so_unready() -> None:
            eventually(lambda: admin_get(admin, "/readyz")[0] == 503, 10, "sidecar /readyz 503 once the app is gone")
            assert not gateway.probe_once(app_container, app_container["livenessProbe"]), "app probe passes without app"

        shutdown = gateway.stop(between=app_gone_so_unready)
        assert shutdown["killed"] == [], f"killed after the grace period: {shutdown}"
        assert shutdown["exit"] == {"app": 0, "telemetryd": 0, "sidecar": 0}, shutdown
        assert shutdown["order"] == ["app", "telemetryd", "sidecar"], shutdown
        assert shutdown["seconds"] < shutdown["grace"]
        orch_stop = orch.stop()
        assert orch_stop["exit"] == {"orchestrator": 0} and not orch_stop["killed"], orch_stop
    except (AssertionError, PodError, OSError, ValueError) as e:
        raise AssertionError(f"{e}\n\nlogs of the pod:\n{gateway.logs()}\n{orch.logs()}") from None
    finally:
        gateway.kill_all()
        orch.kill_all()
