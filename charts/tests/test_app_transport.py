"""The app hop (`app.transport`): by default a Unix socket on a volume that
only the app and the sidecar mount, so that no other container of the pod
can call the app; with `tcp`, loopback `app.port` as before. Either way the
app's probes exec `paymesh-app --probe` at the app's own PAYMESH_APP_LISTEN.
(test_pod_run.py runs both.)"""

from __future__ import annotations

import pytest
import yaml

import helpers

SOCKET_DIR = "/run/paymesh-app"
SOCKET = f"{SOCKET_DIR}/app.sock"


def pod(r: helpers.Rendered) -> dict:
    return helpers.pod_spec(r.get("Deployment", helpers.fullname()))


def containers(r: helpers.Rendered) -> dict[str, dict]:
    return {c["name"]: c for c in helpers.all_containers(pod(r))}


def app_listen(r: helpers.Rendered) -> str:
    return {e["name"]: e.get("value") for e in containers(r)["app"]["env"]}["PAYMESH_APP_LISTEN"]


def sidecar_app(r: helpers.Rendered) -> str:
    return yaml.safe_load(r.get("ConfigMap", f"{helpers.fullname()}-sidecar")["data"]["sidecar.yaml"])["app"]


def every_pod_spec(r: helpers.Rendered) -> list[dict]:
    return [helpers.pod_spec(w) for w in r.of_kind("Deployment")] + [p["spec"] for p in r.of_kind("Pod")]


def test_unix_is_the_default_and_only_the_app_and_the_sidecar_mount_the_socket(render_set, value_set):
    r = render_set(value_set)
    assert app_listen(r) == f"unix:{SOCKET}" and sidecar_app(r) == f"unix:{SOCKET}"
    volume = {v["name"]: v for v in pod(r)["volumes"]}["app-socket"]
    assert volume == {"name": "app-socket", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    mounted = {
        (c["name"], m["mountPath"], m.get("readOnly", False))
        for spec in every_pod_spec(r)
        for c in helpers.all_containers(spec)
        for m in c.get("volumeMounts", [])
        if m["name"] == "app-socket"
    }
    # The app makes the socket; the sidecar only connects, which needs no
    # write access to the mount.
    assert mounted == {("app", SOCKET_DIR, False), ("sidecar", SOCKET_DIR, True)}
    # The socket is on that volume and on no other one (not on `run`, which
    # telemetryd shares), so it is missing in every other container.
    for name, c in containers(r).items():
        on = [m["name"] for m in c.get("volumeMounts", []) if SOCKET.startswith(m["mountPath"] + "/")]
        assert on == (["app-socket"] if name in ("app", "sidecar") else []), name


def test_tcp_is_todays_loopback_port_with_no_socket_volume():
    r = helpers.render({"app": {"transport": "tcp", "port": 9000}})
    assert app_listen(r) == "127.0.0.1:9000" and sidecar_app(r) == "127.0.0.1:9000"
    assert "app-socket" not in {v["name"] for v in pod(r)["volumes"]}
    for c in containers(r).values():
        assert "app-socket" not in {m["name"] for m in c.get("volumeMounts", [])}, c["name"]
    assert "volumeMounts" not in containers(r)["app"]
    assert helpers.validate_all(r.objects) == len(r.objects)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_app_probes_exec_the_apps_own_probe(transport):
    probes = {"liveness": {"timeoutSeconds": 5}, "readiness": {"timeoutSeconds": 1}}
    app = containers(helpers.render({"app": {"transport": transport, "probes": probes}}))["app"]
    # It reads the address from the container's PAYMESH_APP_LISTEN, and
    # gives up before the kubelet does, so the reason is in the probe's output.
    assert app["livenessProbe"]["exec"]["command"] == ["paymesh-app", "--probe", "--probe-timeout=4s"]
    assert app["readinessProbe"]["exec"]["command"] == ["paymesh-app", "--probe", "--probe-timeout=1s"]
    assert app["livenessProbe"]["timeoutSeconds"] == 5 and app["readinessProbe"]["timeoutSeconds"] == 1
    assert "ports" not in app, "the app has no port for anything outside the pod"
