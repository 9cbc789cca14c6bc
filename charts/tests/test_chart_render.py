"""The chart renders, lints and validates against Kubernetes' own schemas, and
the rendered pod keeps the promises the chart makes (order, probes, security,
shutdown budget, secrets out of ConfigMaps)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import helm_python as helm
import pytest
import yaml

import helpers
from helpers import CHART, DEMO_KEY_SHA256, KUBE_VERSION, NAMESPACE, RELEASE
from podrun import service_targets

EXPECTED_KINDS = {
    "default": {"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "Pod"},
    "tls": {"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "Pod"},
    "existing-secret": {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount", "Pod"},
    "everything": {
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
        "Pod",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "PersistentVolumeClaim",
    },
}


def gateway(r: helpers.Rendered) -> dict:
    return r.get("Deployment", helpers.fullname())


def test_validates_against_the_newest_kubernetes_that_kubernetes_validate_ships():
    shipped = helpers.kube_versions_shipped()
    assert KUBE_VERSION == shipped[-1], f"newest schemas shipped: {shipped[-1]}"


def test_lint(value_set):
    report = helm.lint(
        str(CHART), helpers.load_values(value_set), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_every_rendered_object_is_valid_for_kubernetes(rendered, value_set):
    assert rendered.kinds() == EXPECTED_KINDS[value_set]
    assert helpers.validate_all(rendered.objects) == len(rendered.objects)


def test_the_validator_is_strict():
    """A misspelt field must fail validation: guards against a validator that
    accepts anything."""
    deployment = json.loads(json.dumps(gateway(helpers.render())))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(AssertionError, match="imagePulPolicy"):
        helpers.validate_object(deployment)


def test_kubernetes_validate_cli_strict(render_set, tmp_path):
    """The same check through the kubernetes-validate command line."""
    docs = [o for o in render_set("everything").objects if not o["apiVersion"].startswith("monitoring.coreos.com")]
    path = tmp_path / "everything.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    cli = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", KUBE_VERSION, str(path)]
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 0 and "ERROR" not in done.stdout, done.stdout + done.stderr


# ---------------------------------------------------------------------------
# the pod


def test_native_sidecars_start_before_the_app(rendered):
    spec = helpers.pod_spec(gateway(rendered))
    inits = spec["initContainers"]
    assert [c["name"] for c in inits] == ["config", "sidecar", "telemetryd"]
    assert "restartPolicy" not in inits[0], "config runs to completion"
    assert [c.get("restartPolicy") for c in inits[1:]] == ["Always", "Always"]
    assert [c["name"] for c in spec["containers"]] == ["app"]


def test_sidecar_probes_use_the_admin_endpoints(rendered):
    sidecar = helpers.pod_spec(gateway(rendered))["initContainers"][1]
    admin = {p["name"]: p["containerPort"] for p in sidecar["ports"]}["admin"]
    assert admin == 9901
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}


def test_security_context(rendered):
    for workload in rendered.of_kind("Deployment") + rendered.of_kind("Pod"):
        spec = workload["spec"] if workload["kind"] == "Pod" else helpers.pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in helpers.all_containers(spec):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]


def test_standard_labels_everywhere(rendered):
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, (obj["kind"], key)
        assert labels["helm.sh/chart"].startswith("paymesh-")
    for workload in rendered.of_kind("Deployment"):
        selector = workload["spec"]["selector"]["matchLabels"]
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert "app.kubernetes.io/component" in selector


def sidecar_config(r: helpers.Rendered) -> dict:
    return yaml.safe_load(r.get("ConfigMap", f"{helpers.fullname()}-sidecar")["data"]["sidecar.yaml"])


def test_grace_period_covers_app_stop_and_sidecar_drain(rendered):
    spec = helpers.pod_spec(gateway(rendered))
    drain = sidecar_config(rendered)["limits"]["drain_timeout"]
    assert drain.endswith("s") and not drain.endswith("ms")
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > int(drain[:-1]) + pre_stop


@pytest.mark.parametrize(
    "drain,grace,ok",
    [
        ("20s", 25, False),
        ("20s", 26, True),
        ("1m", 64, False),
        ("1m", 66, True),
        ("1500ms", 7, False),
        ("1500ms", 8, True),
    ],
)
def test_chart_refuses_a_grace_period_shorter_than_the_drain(drain, grace, ok):
    values = {"terminationGracePeriodSeconds": grace, "sidecar": {"config": {"limits": {"drain_timeout": drain}}}}
    if ok:
        helpers.render(values)
    else:
        with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
            helpers.render(values)


def test_sidecar_config_in_configmap_and_clients_in_secret(rendered, value_set):
    cfg = sidecar_config(rendered)
    assert "clients" not in cfg
    assert cfg["listen"] == "0.0.0.0:8080" and cfg["app"] == "unix:/run/paymesh-app/app.sock"
    assert cfg["admin"] == {"listen": "0.0.0.0:9901", "token_file": "/etc/paymesh/admin/token"}
    for cm in rendered.of_kind("ConfigMap"):
        text = json.dumps(cm["data"])
        assert not re.search(r"\b[0-9a-f]{64}\b", text), f"ConfigMap {cm['metadata']['name']} holds a hash"
    spec = helpers.pod_spec(gateway(rendered))
    volumes = {v["name"]: v for v in spec["volumes"]}
    if value_set == "existing-secret":
        assert volumes["clients"]["secret"]["secretName"] == "payments-api-clients"
        assert volumes["clients"]["secret"]["items"] == [{"key": "paymesh-clients.yaml", "path": "clients.yaml"}]
        assert not rendered.of_kind("Secret")
    else:
        secret = rendered.get("Secret", f"{helpers.fullname()}-clients")
        assert volumes["clients"]["secret"]["secretName"] == secret["metadata"]["name"]
        clients = yaml.safe_load(helpers.secret_data(secret)["clients.yaml"])
        assert clients == {
            "clients": [{"id": "demo", "api_key_sha256": DEMO_KEY_SHA256, "rate": {"per_second": 200, "burst": 400}}]
        }


def test_admin_token_is_generated_or_taken_from_an_existing_secret(rendered, value_set):
    """State-changing admin requests need the token (admin.token_file): the
    chart generates one into a Secret, or mounts the operator's, and both the
    config check and the sidecar see it at the configured path."""
    cfg = sidecar_config(rendered)
    spec = helpers.pod_spec(gateway(rendered))
    volume = {v["name"]: v for v in spec["volumes"]}["admin-token"]["secret"]
    if value_set == "existing-secret":
        assert volume["secretName"] == "payments-admin-token"
        assert volume["items"] == [{"key": "token", "path": "token"}]
        assert not rendered.of_kind("Secret")
    else:
        secret = rendered.get("Secret", f"{helpers.fullname()}-admin-token")
        assert volume["secretName"] == secret["metadata"]["name"]
        assert volume["items"] == [{"key": "admin-token", "path": "token"}]
        token = helpers.secret_data(secret)["admin-token"]
        assert re.fullmatch(r"[A-Za-z0-9]{48}", token), token
        assert token not in json.dumps(rendered.of_kind("ConfigMap"))
    for container in spec["initContainers"][:2]:
        mounts = [m for m in container["volumeMounts"] if cfg["admin"]["token_file"].startswith(m["mountPath"] + "/")]
        assert [(m["name"], m.get("readOnly")) for m in mounts] == [("admin-token", True)], container["name"]


def test_admin_tokens_differ_between_releases():
    def token(name):
        r = helpers.render(name=name)
        return helpers.secret_data(r.get("Secret", f"{helpers.fullname(name)}-admin-token"))["admin-token"]

    assert token("one") != token("two")


def test_files_named_in_the_config_live_on_the_sidecars_volumes(rendered):
    cfg = sidecar_config(rendered)
    spec = helpers.pod_spec(gateway(rendered))
    sidecar, telemetryd = spec["initContainers"][1], spec["initContainers"][2]
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}

    def volume_of(path: str, container: dict) -> dict:
        found = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        assert found, f"{path} is on no volume of {container['name']}"
        return found[0]

    for path in (cfg["migration"]["cache_file"], cfg["overload"]["events_file"]):
        assert not volume_of(path, sidecar).get("readOnly"), path
    telemetry = cfg["overload"]["telemetry_file"]
    out = {e["name"]: e["value"] for e in telemetryd["env"]}["PAYMESH_TELEMETRY_OUT"]
    assert out == telemetry
    assert volume_of(telemetry, sidecar)["name"] == volume_of(out, telemetryd)["name"]
    assert not volume_of(out, telemetryd).get("readOnly")
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    assert volume_of(env["PAYMESH_SIDECAR_CONFIG"], sidecar)["name"] == "config"
    if "tls" in cfg:
        for key in ("cert", "key", "client_ca"):
            assert volume_of(cfg["tls"][key], sidecar)["name"] == "tls"
    assert "/etc/paymesh/config" in mounts


def test_service_exposes_only_the_sidecar(rendered, value_set):
    svc = rendered.get("Service", helpers.fullname())
    spec = helpers.pod_spec(gateway(rendered))
    sidecar = spec["initContainers"][1]
    public = "https" if value_set == "tls" else "http"
    assert [(p["name"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(public, public), ("metrics", "admin")]
    targets = service_targets(rendered.objects)
    sidecar_ports = {p["containerPort"] for p in sidecar["ports"]}
    assert {targets[(helpers.fullname(), p["port"])] for p in svc["spec"]["ports"]} == sidecar_ports
    assert "ports" not in spec["containers"][0], "the app listens on loopback only"


def test_checksums_roll_the_pods_on_config_or_client_change():
    def annotations(values):
        return gateway(helpers.render(values))["spec"]["template"]["metadata"]["annotations"]

    base = annotations({})
    limits = annotations({"sidecar": {"config": {"limits": {"max_inflight": 7}}}})
    clients = annotations({"clients": [{"id": "other", "api_key_sha256": "1" * 64}]})
    assert base["checksum/config"] != limits["checksum/config"]
    assert base["checksum/clients"] == limits["checksum/clients"]
    assert base["checksum/clients"] != clients["checksum/clients"]
    assert base["checksum/config"] == clients["checksum/config"]


def test_tls(render_set):
    r = render_set("tls")
    cfg = sidecar_config(r)
    assert cfg["tls"] == {
        "cert": "/etc/paymesh/tls/tls.crt",
        "key": "/etc/paymesh/tls/tls.key",
        "client_ca": "/etc/paymesh/tls/ca.crt",
    }
    volumes = {v["name"]: v for v in helpers.pod_spec(gateway(r))["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "paymesh-tls"
    assert "tls" not in sidecar_config(helpers.render())


def test_tls_needs_a_secret_name():
    with pytest.raises(helm.HelmError, match="sidecar.tls.secretName"):
        helpers.render({"sidecar": {"tls": {"enabled": True}}})


def test_clients_or_existing_secret_are_required():
    with pytest.raises(helm.HelmError, match="existingSecret"):
        helpers.render({"clients": []})


def test_everything_on(render_set):
    r = render_set("everything")
    name = helpers.fullname()
    assert "replicas" not in gateway(r)["spec"], "the HPA owns the replica count"
    hpa = r.get("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    monitor = r.get("ServiceMonitor")
    svc = r.get("Service", name)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    policies = {p["metadata"]["name"]: p for p in r.of_kind("NetworkPolicy")}
    assert set(policies) == {name, f"{name}-orchestrator"}
    assert {r_["ports"][0]["port"] for r_ in policies[name]["spec"]["ingress"]} == {"http", "admin"}
    dashboard = r.get("ConfigMap", f"{name}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    with open(CHART / "files" / "paymesh-dashboard.json") as f:
        assert json.loads(dashboard["data"]["paymesh-dashboard.json"]) == json.load(f)
    pdb = r.get("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == gateway(r)["spec"]["selector"]["matchLabels"]


ALERTS = {
    "PaymeshHighErrorRate",
    "PaymeshThrottling",
    "PaymeshComponentsShed",
    "PaymeshSwitchFlapping",
    "PaymeshTelemetryStale",
    "PaymeshEtcdDisconnected",
    "PaymeshEtcdAccessDenied",
    "PaymeshMigrationValueRefused",
    "PaymeshConfigReloadRefused",
    "PaymeshAccessLogDropping",
    "PaymeshFileDescriptorsNearLimit",
}


def rule_alerts(rendered) -> dict[str, dict]:
    return {x["alert"]: x for g in rendered.get("PrometheusRule")["spec"]["groups"] for x in g["rules"]}


def test_prometheus_rule_alerts(render_set):
    alerts = rule_alerts(render_set("everything"))
    assert set(alerts) == ALERTS
    assert "paymesh_requests_total" in alerts["PaymeshHighErrorRate"]["expr"]
    assert "route" in alerts["PaymeshHighErrorRate"]["expr"]
    assert "paymesh_throttled_total" in alerts["PaymeshThrottling"]["expr"]
    assert re.search(r"paymesh_component_enabled\{[^}]*\}\) == 0", alerts["PaymeshComponentsShed"]["expr"])
    assert re.search(r"paymesh_telemetry_stale\{[^}]*\}\) == 1", alerts["PaymeshTelemetryStale"]["expr"])
    runbook = (helpers.REPO / "docs" / "runbook.md").read_text()
    sections = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    for name, a in alerts.items():
        expr = a["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        # The default selector: the release's namespace, not a job label that
        # only one way of scraping sets.
        assert "job=" not in expr and f'namespace="{NAMESPACE}"' in expr, expr
        assert "{{ $labels." in a["annotations"]["summary"], "Prometheus templates must survive Helm"
        assert a["labels"]["severity"] in {"warning", "critical"}
        url = a["annotations"]["runbook_url"]
        assert url.endswith(f"docs/runbook.md#{name.lower()}"), url
        assert name.lower() in sections, f"docs/runbook.md has no section for {name}"


def test_prometheus_rule_selector_severity_and_switches(render_set):
    sel = 'job="payments/paymesh",container="sidecar"'
    values = helpers.deep_merge(
        helpers.load_values("everything"),
        {
            "prometheusRule": {
                "selector": sel,
                "alerts": {
                    "PaymeshThrottling": {"enabled": False, "severity": "warning"},
                    "PaymeshEtcdDisconnected": {"enabled": True, "severity": "critical"},
                },
            }
        },
    )
    alerts = rule_alerts(helpers.render(values))
    assert set(alerts) == ALERTS - {"PaymeshThrottling"}
    assert alerts["PaymeshEtcdDisconnected"]["labels"]["severity"] == "critical"
    for a in alerts.values():
        assert f"{{{sel}" in a["expr"].replace(" ", "") or f"{{{sel}," in a["expr"], a["expr"]
        assert "namespace=" not in a["expr"]


def test_prometheus_rule_with_every_alert_off_renders_no_rule_object():
    # An empty rules list is an invalid PrometheusRule: nothing is rendered.
    values = helpers.deep_merge(
        helpers.load_values("everything"),
        {"prometheusRule": {"alerts": {name: {"enabled": False} for name in ALERTS}}},
    )
    assert helpers.render(values).of_kind("PrometheusRule") == []
    one = helpers.deep_merge(values, {"prometheusRule": {"alerts": {"PaymeshThrottling": {"enabled": True}}}})
    assert set(rule_alerts(helpers.render(one))) == {"PaymeshThrottling"}


def test_orchestrator_demo(render_set):
    def app_env(r):
        return {e["name"]: e["value"] for e in helpers.pod_spec(gateway(r))["containers"][0]["env"]}

    assert app_env(helpers.render())["PAYMESH_APP_ORCHESTRATOR"] == "http://orchestrator:8090"
    r = render_set("everything")
    name = f"{helpers.fullname()}-orchestrator"
    assert app_env(r)["PAYMESH_APP_ORCHESTRATOR"] == f"http://{name}:8090"
    assert service_targets(r.objects)[(name, 8090)] == 8090
    orch = r.get("Deployment", name)
    env = {e["name"]: e["value"] for e in helpers.pod_spec(orch)["containers"][0]["env"]}
    assert env["PAYMESH_ORCHESTRATOR_LISTEN"] == "0.0.0.0:8090"
    assert helpers.pod_spec(orch)["volumes"][0]["persistentVolumeClaim"]["claimName"] == name
    assert not any(o["metadata"]["name"] == name for o in helpers.render().objects)


def test_notes(render_set):
    notes = render_set("default").notes
    assert "kubectl -n payments rollout status deployment/paymesh" in notes
    assert "WARNING" in notes and "DEMO key" in notes
    secret_notes = render_set("existing-secret").notes
    assert "WARNING" not in secret_notes and "payments-api-clients" in secret_notes
    assert "https://127.0.0.1" in render_set("tls").notes


def test_release_names_and_namespaces():
    r = helpers.render({}, name="edge", namespace="pay-eu")
    assert {o["metadata"]["namespace"] for o in r.objects} == {"pay-eu"}
    assert r.get("Deployment")["metadata"]["name"] == "edge-paymesh"
    assert helpers.render({"fullnameOverride": "gw"}).get("Deployment")["metadata"]["name"] == "gw"
    assert RELEASE == helpers.fullname()
