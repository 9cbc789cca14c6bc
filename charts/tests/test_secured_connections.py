"""The chart's secured connections (issue 14): etcd with TLS, a client
certificate and a password; the orchestration services per feature, over
TLS with a CA bundle and a client certificate; the demo orchestrator serving
TLS with a certificate Helm makes. Each rendering is checked for what the
sidecar YAML and the app's environment say, that the files they name are
mounted where they say, and that every object is valid for Kubernetes; the
schema refuses half-set TLS and auth."""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import helpers
from helpers import NAMESPACE
from podrun import Pod, log_tail

ETCD_DIR = "/etc/paymesh/etcd"
ORCH_DIR = "/etc/paymesh/orchestration"

SECURE_ETCD = {
    "sidecar": {"config": {"migration": {"etcd_endpoints": ["https://etcd-0.etcd:2379", "https://etcd-1.etcd:2379"]}}},
    "etcd": {
        "tls": {"existingSecret": "etcd-client-tls", "certKey": "tls.crt", "keyKey": "tls.key"},
        "auth": {"username": "paymesh", "existingSecret": "etcd-paymesh-password"},
    },
}

PER_FEATURE = {
    "app": {
        "orchestratorUrl": "https://orchestration.payments.svc:8443",
        "orchestration": {
            "chargeUrl": "https://charges.payments.svc:8443",
            "disbursementUrl": "https://payouts.payments.svc:8443",
            "tls": {"caConfigMap": "orchestration-ca", "caKey": "bundle.pem", "clientCertSecret": "paymesh-app-client"},
        },
    }
}


def gateway(r: helpers.Rendered) -> dict:
    return r.get("Deployment", helpers.fullname())


def container(r: helpers.Rendered, name: str) -> dict:
    (c,) = [c for c in helpers.all_containers(helpers.pod_spec(gateway(r))) if c["name"] == name]
    return c


def env(c: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def mounts(c: dict) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}


def volume(r: helpers.Rendered, name: str) -> dict | None:
    found = [v for v in helpers.pod_spec(gateway(r))["volumes"] if v["name"] == name]
    return found[0] if found else None


def projected_files(v: dict) -> dict[str, tuple[str, str, str]]:
    """mounted file -> (kind, object name, key) of a projected volume."""
    out = {}
    for src in v["projected"]["sources"]:
        kind = "configMap" if "configMap" in src else "secret"
        for item in src[kind]["items"]:
            assert item["path"] not in out, f"{item['path']} projected twice"
            out[item["path"]] = (kind, src[kind]["name"], item["key"])
    return out


def sidecar_config(r: helpers.Rendered) -> dict:
    return yaml.safe_load(r.get("ConfigMap", f"{helpers.fullname()}-sidecar")["data"]["sidecar.yaml"])


def test_defaults_render_no_etcd_or_orchestration_tls():
    r = helpers.render()
    migration = sidecar_config(r)["migration"]
    assert "etcd_tls" not in migration and "etcd_auth" not in migration
    assert volume(r, "etcd") is None and volume(r, "orchestration-tls") is None
    app = env(container(r, "app"))
    assert [k for k in app if k.startswith("PAYMESH_APP_ORCHESTRATOR")] == ["PAYMESH_APP_ORCHESTRATOR"]
    assert mounts(container(r, "app")) == {"app-socket": "/run/paymesh-app"}


def test_secured_etcd_renders_the_contract_keys_and_their_files():
    r = helpers.render(SECURE_ETCD)
    migration = sidecar_config(r)["migration"]
    assert migration["etcd_endpoints"] == ["https://etcd-0.etcd:2379", "https://etcd-1.etcd:2379"]
    assert migration["etcd_tls"] == {"ca": f"{ETCD_DIR}/ca.crt", "cert": f"{ETCD_DIR}/tls.crt", "key": f"{ETCD_DIR}/tls.key"}
    assert migration["etcd_auth"] == {"username": "paymesh", "password_file": f"{ETCD_DIR}/password"}
    v = volume(r, "etcd")
    assert v["projected"]["defaultMode"] == 0o440
    assert projected_files(v) == {
        "ca.crt": ("secret", "etcd-client-tls", "ca.crt"),
        "tls.crt": ("secret", "etcd-client-tls", "tls.crt"),
        "tls.key": ("secret", "etcd-client-tls", "tls.key"),
        "password": ("secret", "etcd-paymesh-password", "password"),
    }
    # The sidecar reads them, and so does --check-config in the init
    # container; nobody else sees them.
    for name in ("config", "sidecar"):
        assert mounts(container(r, name))["etcd"] == ETCD_DIR, name
    for name in ("telemetryd", "app"):
        assert "etcd" not in mounts(container(r, name)), name
    # The password is a file: never in the ConfigMap or the environment.
    text = r.get("ConfigMap", f"{helpers.fullname()}-sidecar")["data"]["sidecar.yaml"]
    assert "password:" not in text
    assert helpers.validate_all(r.objects) == len(r.objects)


def test_etcd_tls_with_a_ca_only_and_no_auth():
    r = helpers.render(
        {
            "sidecar": {"config": {"migration": {"etcd_endpoints": ["https://etcd:2379"]}}},
            "etcd": {"tls": {"existingSecret": "etcd-ca", "caKey": "bundle.pem"}},
        }
    )
    migration = sidecar_config(r)["migration"]
    assert migration["etcd_tls"] == {"ca": f"{ETCD_DIR}/ca.crt"}
    assert "etcd_auth" not in migration
    assert projected_files(volume(r, "etcd")) == {"ca.crt": ("secret", "etcd-ca", "bundle.pem")}


def test_etcd_auth_over_plain_http():
    r = helpers.render({"etcd": {"auth": {"username": "paymesh", "existingSecret": "pw", "existingSecretKey": "pass"}}})
    migration = sidecar_config(r)["migration"]
    assert migration["etcd_endpoints"] == ["http://etcd:2379"] and "etcd_tls" not in migration
    assert migration["etcd_auth"]["password_file"] == f"{ETCD_DIR}/password"
    assert projected_files(volume(r, "etcd")) == {"password": ("secret", "pw", "pass")}


def test_per_feature_orchestration_services_and_their_tls():
    r = helpers.render(PER_FEATURE)
    app = env(container(r, "app"))
    assert app["PAYMESH_APP_ORCHESTRATOR"] == "https://orchestration.payments.svc:8443"
    assert app["PAYMESH_APP_ORCHESTRATOR_CHARGE"] == "https://charges.payments.svc:8443"
    # A refund must reach the service that holds its charge.
    assert app["PAYMESH_APP_ORCHESTRATOR_REFUND"] == app["PAYMESH_APP_ORCHESTRATOR_CHARGE"]
    assert app["PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT"] == "https://payouts.payments.svc:8443"
    assert app["PAYMESH_APP_ORCHESTRATOR_CA"] == f"{ORCH_DIR}/ca.crt"
    assert app["PAYMESH_APP_ORCHESTRATOR_CERT"] == f"{ORCH_DIR}/tls.crt"
    assert app["PAYMESH_APP_ORCHESTRATOR_KEY"] == f"{ORCH_DIR}/tls.key"
    assert mounts(container(r, "app")) == {"app-socket": "/run/paymesh-app", "orchestration-tls": ORCH_DIR}
    assert projected_files(volume(r, "orchestration-tls")) == {
        "ca.crt": ("configMap", "orchestration-ca", "bundle.pem"),
        "tls.crt": ("secret", "paymesh-app-client", "tls.crt"),
        "tls.key": ("secret", "paymesh-app-client", "tls.key"),
    }
    assert "orchestration-tls" not in mounts(container(r, "sidecar"))
    assert helpers.validate_all(r.objects) == len(r.objects)


def test_disbursement_alone_leaves_charge_and_refund_on_the_default():
    r = helpers.render({"app": {"orchestration": {"disbursementUrl": "http://payouts:8090"}}})
    app = env(container(r, "app"))
    assert app["PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT"] == "http://payouts:8090"
    assert "PAYMESH_APP_ORCHESTRATOR_CHARGE" not in app and "PAYMESH_APP_ORCHESTRATOR_REFUND" not in app


def test_orchestration_ca_from_a_secret_and_system_roots_otherwise():
    r = helpers.render({"app": {"orchestration": {"tls": {"caSecret": "orch-ca"}}}})
    assert projected_files(volume(r, "orchestration-tls")) == {"ca.crt": ("secret", "orch-ca", "ca.crt")}
    assert "PAYMESH_APP_ORCHESTRATOR_CERT" not in env(container(r, "app"))
    # https without a CA: the system roots, so nothing to mount.
    r = helpers.render({"app": {"orchestratorUrl": "https://orchestration.example.com"}})
    assert volume(r, "orchestration-tls") is None
    assert "PAYMESH_APP_ORCHESTRATOR_CA" not in env(container(r, "app"))


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("openssl")
    assert exe, "openssl is needed to check the generated certificates (apt-get install openssl)"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("client_auth", [False, True], ids=["tls", "mtls"])
def test_demo_orchestrator_serves_tls_with_a_certificate_helm_makes(client_auth, tmp_path):
    r = helpers.render({"orchestrator": {"enabled": True, "tls": {"enabled": True, "clientAuth": client_auth}}})
    name = f"{helpers.fullname()}-orchestrator"
    secret = r.get("Secret", f"{name}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    files = helpers.secret_data(secret)
    for k, text in files.items():
        (tmp_path / k).write_text(text)
    # The CA signed a certificate for the Service's names.
    done = openssl("verify", "-CAfile", "ca.crt", "tls.crt", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    text = openssl("x509", "-in", "tls.crt", "-noout", "-text", cwd=tmp_path).stdout
    for dns in (name, f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.cluster.local"):
        assert f"DNS:{dns}" in text, text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text
    done = openssl("pkey", "-in", "tls.key", "-noout", cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    orch = helpers.pod_spec(r.get("Deployment", name))
    (c,) = orch["containers"]
    tls = "/etc/paymesh-orchestrator/tls"
    want = ["--tls-cert", f"{tls}/tls.crt", "--tls-key", f"{tls}/tls.key"]
    if client_auth:
        want += ["--tls-client-ca", f"{tls}/ca.crt"]
    assert c["args"] == want
    assert mounts(c)["tls"] == tls
    assert [v["secret"]["secretName"] for v in orch["volumes"] if v["name"] == "tls"] == [f"{name}-tls"]
    if client_auth:
        assert "tcpSocket" in c["readinessProbe"]
    else:
        assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert r.get("Service", name)["spec"]["ports"][0]["name"] == "https"

    app = env(container(r, "app"))
    assert app["PAYMESH_APP_ORCHESTRATOR"] == f"https://{name}:8090"
    assert app["PAYMESH_APP_ORCHESTRATOR_CA"] == f"{ORCH_DIR}/ca.crt"
    files = projected_files(volume(r, "orchestration-tls"))
    assert files["ca.crt"] == ("secret", f"{name}-tls", "ca.crt")
    if client_auth:
        assert files["tls.crt"] == ("secret", f"{name}-tls", "tls.crt")
        assert app["PAYMESH_APP_ORCHESTRATOR_KEY"] == f"{ORCH_DIR}/tls.key"
    else:
        assert set(files) == {"ca.crt"} and "PAYMESH_APP_ORCHESTRATOR_CERT" not in app
    assert helpers.validate_all(r.objects) == len(r.objects)


def test_demo_orchestrator_with_an_operator_secret_generates_none():
    r = helpers.render({"orchestrator": {"enabled": True, "tls": {"enabled": True, "secretName": "orch-tls"}}})
    assert [s["metadata"]["name"] for s in r.of_kind("Secret") if s["type"] == "kubernetes.io/tls"] == []
    assert projected_files(volume(r, "orchestration-tls"))["ca.crt"] == ("secret", "orch-tls", "ca.crt")


# Half-set TLS and auth: each refused by the schema, by itself and through
# Helm, naming the value to set.
REFUSED = [
    ({"etcd": {"tls": {"existingSecret": "s", "certKey": "tls.crt"}}}, "keyKey"),
    ({"etcd": {"tls": {"existingSecret": "s", "keyKey": "tls.key"}}}, "certKey"),
    ({"etcd": {"tls": {"certKey": "tls.crt", "keyKey": "tls.key"}}}, "existingSecret"),
    ({"sidecar": {"config": {"migration": {"etcd_endpoints": ["https://etcd:2379"]}}}}, "existingSecret"),
    (
        {"sidecar": {"config": {"migration": {"etcd_endpoints": ["http://etcd-0:2379", "https://etcd-1:2379"]}}}},
        "existingSecret",
    ),
    ({"etcd": {"auth": {"username": "paymesh"}}}, "existingSecret"),
    ({"etcd": {"auth": {"existingSecret": "pw"}}}, "username"),
    ({"etcd": {"auth": {"password": "hunter2"}}}, "password"),
    ({"app": {"orchestration": {"tls": {"caConfigMap": "a", "caSecret": "b"}}}}, "tls"),
    ({"app": {"orchestration": {"refundUrl": "http://refunds:8090"}}}, "refundUrl"),
    ({"app": {"orchestration": {"chargeUrl": "charges:8090"}}}, "chargeUrl"),
    ({"orchestrator": {"tls": {"clientAuth": True}}}, "enabled"),
]


@pytest.mark.parametrize("override,key", REFUSED, ids=[k + "-" + str(i) for i, (_, k) in enumerate(REFUSED)])
def test_schema_refuses_half_set_tls_and_auth(override, key):
    from test_values_schema import assert_refused

    assert_refused(override, key)


def test_schema_accepts_the_secured_renderings():
    import jsonschema
    from test_values_schema import SCHEMA, merged

    for values in (SECURE_ETCD, PER_FEATURE, {"orchestrator": {"enabled": True, "tls": {"enabled": True, "clientAuth": True}}}):
        jsonschema.Draft7Validator(SCHEMA).validate(merged(values))


def etcd_client_secrets(tls_dir: Path) -> list[dict]:
    return [
        helpers.make_secret(
            "etcd-client-tls",
            {k: (tls_dir / f).read_text() for k, f in (("ca.crt", "ca.crt"), ("tls.crt", "client.crt"), ("tls.key", "client.key"))},
        ),
        helpers.make_secret("etcd-paymesh-password", {"password": "correct horse battery staple\n"}),
    ]


@pytest.mark.binaries
def test_secured_etcd_config_passes_check_config(tmp_path, tls_dir):
    """The pod's own config init container, with the etcd Secrets the
    operator made, accepts the rendered YAML: the files it names are where it
    names them."""
    helpers.require_binary("paymesh-sidecar")
    r = helpers.render(SECURE_ETCD)
    deployment = gateway(r)
    pod = Pod(deployment, r.objects + etcd_client_secrets(tls_dir), tmp_path, helpers.bin_dir(), NAMESPACE)
    pod.materialise_volumes()
    for f in ("ca.crt", "tls.crt", "tls.key", "password"):
        assert (pod.volume_dirs["etcd"] / f).is_file(), f
    init = helpers.pod_spec(deployment)["initContainers"][0]
    rc = pod.run_to_completion(init)
    log = log_tail(tmp_path / "logs" / "config.log")
    if rc != 0 and re.search(r"unknown field `etcd_(tls|auth)`", log):
        pytest.skip(f"{helpers.bin_dir()}/paymesh-sidecar predates migration.etcd_tls/etcd_auth (issue 14): rebuild it")
    assert rc == 0, f"the config init container failed ({rc}):\n{log}"
    cfg = yaml.safe_load((pod.volume_dirs["config"] / "sidecar.yaml").read_text())
    assert Path(cfg["migration"]["etcd_tls"]["ca"]).read_text() == (tls_dir / "ca.crt").read_text()
    assert base64.b64decode(etcd_client_secrets(tls_dir)[1]["data"]["password"]).decode() == Path(
        cfg["migration"]["etcd_auth"]["password_file"]
    ).read_text()


@pytest.mark.binaries
@pytest.mark.parametrize("client_auth", [False, True], ids=["tls", "mtls"])
def test_pod_run_through_the_demo_orchestrator_over_tls(client_auth, tmp_path):
    """The gateway pod and the demo orchestrator, run as local processes with
    the certificate Helm made: a charge on the orchestration path reaches the
    orchestrator over TLS (and mTLS), the app trusting the chart's CA and
    presenting its certificate; without one the orchestrator refuses."""
    import ssl
    import uuid

    from test_pod_run import CHARGE, Client, pod_run_values

    for binary in helpers.BINARIES:
        helpers.require_binary(binary)
    public, admin, app, orchestrator = helpers.free_ports(4)
    values = helpers.deep_merge(
        pod_run_values(public, admin, app, orchestrator),
        {"orchestrator": {"tls": {"enabled": True, "clientAuth": client_auth}}},
    )
    r = helpers.render(values)
    name = helpers.fullname()
    pod = Pod(gateway(r), r.objects, tmp_path / "gateway", helpers.bin_dir(), NAMESPACE)
    orch = Pod(r.get("Deployment", f"{name}-orchestrator"), r.objects, tmp_path / "orchestrator", helpers.bin_dir(), NAMESPACE)
    try:
        try:
            orch.start()
        except AssertionError as e:
            if "--tls-cert" in str(e) and "unexpected argument" in str(e):
                pytest.skip(f"{helpers.bin_dir()}/paymesh-orchestrator predates --tls-cert (issue 14): rebuild it")
            raise
        try:
            pod.start()
        except AssertionError as e:
            if "must be an http:// URL" in str(e) + pod.logs():
                pytest.skip(f"{helpers.bin_dir()}/paymesh-app predates https:// orchestrators (issue 14): rebuild it")
            raise
        headers = {"Authorization": f"Bearer {helpers.DEMO_KEY}", "Idempotency-Key": str(uuid.uuid4())}
        status, hdrs, raw = Client(public).request("POST", "/v1/charges", CHARGE, headers)
        assert status == 201, f"POST /v1/charges: {status} {raw[:500]!r}"
        assert hdrs.get("x-paymesh-route") == "orchestration", hdrs
        if client_auth:
            ca = tmp_path / "ca.crt"
            ca.write_text(helpers.secret_data(r.get("Secret", f"{name}-orchestrator-tls"))["ca.crt"])
            ctx = ssl.create_default_context(cafile=str(ca))
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                conn = http.client.HTTPSConnection("127.0.0.1", orchestrator, timeout=5, context=ctx)
                try:
                    conn.request("GET", "/healthz")
                    conn.getresponse().read()
                finally:
                    conn.close()
        shutdown = pod.stop()
        assert shutdown["exit"] == {"app": 0, "telemetryd": 0, "sidecar": 0}, shutdown
        assert orch.stop()["exit"] == {"orchestrator": 0}
    except (AssertionError, OSError, ValueError) as e:
        raise AssertionError(f"{e}\n\nlogs of the pod:\n{pod.logs()}\n{orch.logs()}") from None
    finally:
        pod.kill_all()
        orch.kill_all()
