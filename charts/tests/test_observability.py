"""The chart's tracing (issue 18) and shadow-read (issue 17) values: what
they render into the sidecar YAML (`tracing:`, `shadow:`), the app's and the
demo orchestrator's OTLP environment, the NetworkPolicy's egress to the
collector; the schema refusing bad ones; and the rendered configuration
through the pod's config init container and `--check-config`."""

from __future__ import annotations

import re
import subprocess

import helm_python as helm
import jsonschema
import pytest
import yaml

import helpers
from helpers import NAMESPACE
from podrun import Pod, log_tail
from test_values_schema import SCHEMA, merged

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")

GRPC = {
    "tracing": {"otlpEndpoint": "http://otel-collector.observability:4317", "sampleRatio": 0.25},
    "orchestrator": {"enabled": True},
    "networkPolicy": {"enabled": True},
}
HTTP = {
    "tracing": {"otlpEndpoint": "https://otlp.example.com", "protocol": "http", "sampleRatio": 0},
    "orchestrator": {"enabled": True},
    "networkPolicy": {"enabled": True},
}
SHADOW = {
    "shadow": {
        "samplePercent": {"charge": 5, "refund": 1.5, "disbursement": 0},
        "maxInflight": 32,
        "timeout": "750ms",
        "ignoreFields": ["created", "metadata.*", "source.last4"],
    }
}


def sidecar_config(r: helpers.Rendered) -> dict:
    return yaml.safe_load(r.get("ConfigMap", f"{helpers.fullname()}-sidecar")["data"]["sidecar.yaml"])


def containers(r: helpers.Rendered) -> dict[str, dict]:
    """Every container of the gateway pod and the demo orchestrator's, by name."""
    out = {c["name"]: c for c in helpers.all_containers(helpers.pod_spec(r.get("Deployment", helpers.fullname())))}
    orch = r.of_kind("Deployment")
    for d in orch:
        if d["metadata"]["name"] == f"{helpers.fullname()}-orchestrator":
            (c,) = helpers.pod_spec(d)["containers"]
            out["orchestrator"] = c
    return out


def otel_env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if e["name"].startswith("OTEL_")}


def collector_egress(r: helpers.Rendered) -> list[list[int]]:
    """The port lists of the gateway NetworkPolicy's egress rules."""
    policy = r.get("NetworkPolicy", helpers.fullname())
    return [[p["port"] for p in rule.get("ports", [])] for rule in policy["spec"]["egress"]]


# --------------------------------------------------------------------------
# rendering


def test_defaults_render_no_tracing_and_the_sidecars_shadow_defaults():
    r = helpers.render({})
    cfg = sidecar_config(r)
    assert "tracing" not in cfg
    # The sidecar's own defaults (sidecar/src/config/shadow.rs), spelt out.
    assert cfg["shadow"] == {"sample_percent": 0, "max_inflight": 16, "timeout": "2s", "ignore_fields": []}
    assert cfg["overload"]["components"] == ["shadow_compare", "access_log", "detailed_metrics", "tracing", "profiling"]
    for name, c in containers(helpers.render({"orchestrator": {"enabled": True}})).items():
        assert not otel_env(c), f"{name} has OTLP variables without tracing.otlpEndpoint"


def test_grpc_tracing_renders_the_sidecar_section_and_the_otel_env():
    r = helpers.render(GRPC)
    assert sidecar_config(r)["tracing"] == {
        "otlp_endpoint": "http://otel-collector.observability:4317",
        "protocol": "grpc",
        "sample_ratio": 0.25,
    }
    cs = containers(r)
    want = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert otel_env(cs["app"]) == want
    assert otel_env(cs["orchestrator"]) == want
    # The sidecar reads its YAML; the others export nothing.
    for name in ("config", "sidecar", "telemetryd"):
        assert not otel_env(cs[name]), name
    assert [4317] in collector_egress(r)
    helpers.validate_all(r.objects)


def test_http_tracing_renders_http_protobuf_and_the_schemes_port():
    r = helpers.render(HTTP)
    assert sidecar_config(r)["tracing"] == {"otlp_endpoint": "https://otlp.example.com", "protocol": "http", "sample_ratio": 0}
    want = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    cs = containers(r)
    assert otel_env(cs["app"]) == want and otel_env(cs["orchestrator"]) == want
    # No port in the URL: https's.
    assert [443] in collector_egress(r)
    assert [4317] not in collector_egress(r)
    helpers.validate_all(r.objects)


def test_no_collector_egress_without_tracing():
    ports = collector_egress(helpers.render({"networkPolicy": {"enabled": True}}))
    assert ports == [[53, 53], [2379, 8090]], ports


def test_shadow_values_render_the_sidecar_section():
    cfg = sidecar_config(helpers.render(SHADOW))
    assert cfg["shadow"] == {
        "sample_percent": {"charge": 5, "refund": 1.5, "disbursement": 0},
        "max_inflight": 32,
        "timeout": "750ms",
        "ignore_fields": ["created", "metadata.*", "source.last4"],
    }
    assert "tracing" not in cfg
    assert sidecar_config(helpers.render({"shadow": {"samplePercent": 12.5}}))["shadow"]["sample_percent"] == 12.5


def test_the_config_checksum_follows_tracing_and_shadow():
    def checksum(values: dict) -> str:
        d = helpers.render(values).get("Deployment", helpers.fullname())
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert checksum({"tracing": {"otlpEndpoint": "http://c:4317"}}) != base
    assert checksum({"shadow": {"samplePercent": 1}}) != base


# --------------------------------------------------------------------------
# schema


GOOD = [
    GRPC,
    HTTP,
    SHADOW,
    {"tracing": {"otlpEndpoint": "http://otel-collector:4318/otlp", "protocol": "http", "sampleRatio": 1}},
    {"shadow": {"samplePercent": 100}},
    {"shadow": {"samplePercent": {"refund": 20}, "maxInflight": 1024}},
]


@pytest.mark.parametrize("values", GOOD, ids=range(len(GOOD)))
def test_schema_accepts_tracing_and_shadow_values(values):
    jsonschema.Draft7Validator(SCHEMA).validate(merged(values))
    helpers.render(values)


BAD = [
    ({"tracing": {"sampleRatio": 1.5}}, "sampleRatio"),
    ({"tracing": {"sampleRatio": -0.1}}, "sampleRatio"),
    ({"tracing": {"sampleRatio": "1"}}, "sampleRatio"),
    ({"tracing": {"protocol": "http/protobuf"}}, "protocol"),
    ({"tracing": {"protocol": "udp"}}, "protocol"),
    ({"tracing": {"otlpEndpoint": "otel-collector:4317"}}, "otlpEndpoint"),
    ({"tracing": {"otlpEndpoint": "grpc://otel-collector:4317"}}, "otlpEndpoint"),
    ({"tracing": {"otlp_endpoint": "http://c:4317"}}, "otlp_endpoint"),
    ({"shadow": {"samplePercent": 101}}, "samplePercent"),
    ({"shadow": {"samplePercent": -1}}, "samplePercent"),
    ({"shadow": {"samplePercent": "5"}}, "samplePercent"),
    ({"shadow": {"samplePercent": {"payout": 5}}}, "samplePercent"),
    ({"shadow": {"samplePercent": {"charge": 150}}}, "samplePercent"),
    ({"shadow": {"maxInflight": 0}}, "maxInflight"),
    ({"shadow": {"maxInflight": 1025}}, "maxInflight"),
    ({"shadow": {"maxInflight": 2.5}}, "maxInflight"),
    ({"shadow": {"timeout": "2"}}, "timeout"),
    ({"shadow": {"ignoreFields": ["source..last4"]}}, "ignoreFields"),
    ({"shadow": {"ignoreFields": "created"}}, "ignoreFields"),
    ({"shadow": {"ignoreFields": [f"f{i}" for i in range(65)]}}, "ignoreFields"),
    ({"shadow": {"sample_percent": 5}}, "sample_percent"),
    ({"sidecar": {"config": {"shadow": {"sample_percent": 5}}}}, "shadow"),
    ({"sidecar": {"config": {"overload": {"components": ["shadow"]}}}}, "components"),
]


@pytest.mark.parametrize("override,key", BAD, ids=[k + "-" + str(i) for i, (_, k) in enumerate(BAD)])
def test_schema_rejects_bad_tracing_and_shadow_values(override, key):
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(merged(override)))
    assert errors, f"schema accepted {override}"
    assert any(key in "/".join(map(str, e.absolute_path)) + e.message for e in errors), [e.message for e in errors]
    with pytest.raises(helm.HelmValuesError, match=re.escape(key)):
        helpers.render(override)


# --------------------------------------------------------------------------
# the sidecar accepts what the chart renders


def run_config_init(values: dict, tmp_path) -> tuple[int, str, Pod]:
    """The pod's config init container (assemble + --check-config), run here."""
    r = helpers.render(values)
    deployment = r.get("Deployment", helpers.fullname())
    pod = Pod(deployment, r.objects, tmp_path, helpers.bin_dir(), NAMESPACE)
    pod.materialise_volumes()
    init = helpers.pod_spec(deployment)["initContainers"][0]
    assert init["name"] == "config"
    rc = pod.run_to_completion(init)
    return rc, log_tail(tmp_path / "logs" / "config.log"), pod


@pytest.mark.binaries
def test_shadow_config_passes_check_config(tmp_path):
    helpers.require_binary("paymesh-sidecar")
    rc, log, pod = run_config_init(SHADOW, tmp_path)
    assert rc == 0, f"the config init container failed ({rc}):\n{log}"
    cfg = yaml.safe_load((pod.volume_dirs["config"] / "sidecar.yaml").read_text())
    assert cfg["shadow"]["sample_percent"] == {"charge": 5, "refund": 1.5, "disbursement": 0}


@pytest.mark.binaries
def test_check_config_refuses_a_shadow_value_the_schema_cannot_see(tmp_path):
    """Guards the check above: the sidecar does read the rendered `shadow:`
    (its 60s bound on timeout is the sidecar's, not the schema's)."""
    helpers.require_binary("paymesh-sidecar")
    rc, log, _ = run_config_init({"shadow": {"timeout": "5m"}}, tmp_path)
    assert rc != 0, "a 5m shadow.timeout was accepted"
    assert "shadow.timeout" in log, log


@pytest.mark.binaries
def test_tracing_config_passes_check_config(tmp_path):
    """Skipped, saying so, while the sidecar binary predates issue 18's
    `tracing:` section (it refuses the key as unknown)."""
    helpers.require_binary("paymesh-sidecar")
    for protocol in ("grpc", "http"):
        values = {"tracing": {"otlpEndpoint": "http://otel-collector:4317", "protocol": protocol, "sampleRatio": 0.5}}
        d = tmp_path / protocol
        rc, log, pod = run_config_init(values, d)
        if rc != 0 and "unknown field `tracing`" in log:
            pytest.skip(
                f"{helpers.bin_dir()}/paymesh-sidecar predates the tracing: section (issue 18) and refuses it as an "
                "unknown key: build a sidecar that has it"
            )
        assert rc == 0, f"the config init container failed ({rc}) for tracing.protocol {protocol}:\n{log}"
        cfg = yaml.safe_load((pod.volume_dirs["config"] / "sidecar.yaml").read_text())
        assert cfg["tracing"]["protocol"] == protocol
    # And the sidecar does read the section: a protocol it has no exporter for is refused.
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "tracing": {**cfg["tracing"], "protocol": "udp"}}))
    sidecar = helpers.require_binary("paymesh-sidecar")
    done = subprocess.run([str(sidecar), "--check-config", str(bad)], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, "tracing.protocol udp was accepted"
    assert "protocol" in done.stdout + done.stderr, done.stdout + done.stderr
