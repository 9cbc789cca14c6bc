"""values.schema.json accepts every documented value set and rejects bad
values, both by itself and when Helm applies it; the chart README lists every
value."""

from __future__ import annotations

import json
import re

import helm_python as helm
import jsonschema
import pytest
import yaml

import helpers
from helpers import CHART

with open(CHART / "values.schema.json") as f:
    SCHEMA = json.load(f)


def merged(override: dict) -> dict:
    return helpers.deep_merge(helpers.chart_defaults(), override)


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_value_sets_are_valid(value_set):
    jsonschema.Draft7Validator(SCHEMA).validate(merged(helpers.load_values(value_set)))


BAD = [
    ({"replicaCount": -1}, "replicaCount"),
    ({"replicaCount": "two"}, "replicaCount"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"logFormat": "xml"}, "logFormat"),
    ({"imagePullPolicy": "Always"}, "imagePullPolicy"),
    ({"sidecar": {"port": 0}}, "port"),
    ({"sidecar": {"port": 70000}}, "port"),
    ({"sidecar": {"adminPort": "9901"}}, "adminPort"),
    ({"sidecar": {"listenHost": "0.0.0.0:8080"}}, "listenHost"),
    ({"sidecar": {"tls": {"enabled": "yes"}}}, "enabled"),
    ({"sidecar": {"tls": {"clientCa": True}}}, "clientCa"),
    ({"sidecar": {"config": {"limits": {"drain_timeout": "20"}}}}, "drain_timeout"),
    ({"sidecar": {"config": {"limits": {"drain_timeout": "1m30s"}}}}, "drain_timeout"),
    ({"sidecar": {"config": {"limits": {"request_timeout": "ten seconds"}}}}, "request_timeout"),
    ({"sidecar": {"config": {"limits": {"max_inflight": 0}}}}, "max_inflight"),
    ({"sidecar": {"config": {"limits": {"max_inflights": 10}}}}, "max_inflights"),
    ({"sidecar": {"config": {"migration": {"defaults": {"charge": 101}}}}}, "charge"),
    ({"sidecar": {"config": {"migration": {"defaults": {"payout": 5}}}}}, "payout"),
    ({"sidecar": {"config": {"migration": {"etcd_endpoints": ["etcd:2379"]}}}}, "etcd_endpoints"),
    ({"sidecar": {"config": {"migration": {"cache_file": "/tmp/x"}}}}, "cache_file"),
    ({"sidecar": {"config": {"overload": {"components": ["auth"]}}}}, "components"),
    ({"sidecar": {"config": {"overload": {"shed": {"cpu_percent": 150}}}}}, "cpu_percent"),
    ({"sidecar": {"config": {"access_log": {"path": "/tmp/access.log"}}}}, "path"),
    ({"sidecar": {"config": {"listen": "0.0.0.0:1"}}}, "listen"),
    ({"clients": [{"id": "a", "api_key_sha256": "not-a-hash"}]}, "api_key_sha256"),
    ({"clients": [{"id": "a", "api_key_sha256": "A" * 64}]}, "api_key_sha256"),
    ({"clients": [{"api_key_sha256": "a" * 64}]}, "id"),
    ({"clients": [{"id": "a", "api_key": "secret", "api_key_sha256": "a" * 64}]}, "api_key"),
    ({"clients": [{"id": "a", "api_key_sha256": "a" * 64, "rate": {"per_second": 0}}]}, "per_second"),
    ({"app": {"port": -5}}, "port"),
    ({"app": {"transport": "vsock"}}, "transport"),
    ({"sidecar": {"config": {"metrics": {"client_series": "some"}}}}, "client_series"),
    ({"sidecar": {"config": {"metrics": {"client_series": ["demo", "demo"]}}}}, "client_series"),
    ({"app": {"orchestratorUrl": "orchestrator:8090"}}, "orchestratorUrl"),
    ({"app": {"preStopSleepSeconds": -1}}, "preStopSleepSeconds"),
    ({"telemetryd": {"diskPaths": ["relative/dir"]}}, "diskPaths"),
    ({"service": {"type": "ExternalName"}}, "type"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "maxUnavailable"),
    ({"autoscaling": {"targetCPUUtilizationPercentage": 0}}, "targetCPUUtilizationPercentage"),
    ({"prometheusRule": {"errorRateThreshold": 5}}, "errorRateThreshold"),
    ({"networkPolicy": {"egressPorts": [0]}}, "egressPorts"),
    ({"sidecar": {"resources": {"requests": {"cpu": "lots"}}}}, "cpu"),
    ({"existingSecretKey": "a/b"}, "existingSecretKey"),
    ({"fullnameOverride": "Bad_Name"}, "fullnameOverride"),
]


@pytest.mark.parametrize("override,key", BAD, ids=[k + "-" + str(i) for i, (_, k) in enumerate(BAD)])
def test_schema_rejects_bad_values(override, key):
    assert_refused(override, key)


def assert_refused(override: dict, key: str) -> None:
    """The schema refuses `override` with an error naming `key`, by itself
    and when Helm applies it."""
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(merged(override)))
    assert errors, f"schema accepted {override}"
    assert any(key in "/".join(map(str, e.absolute_path)) + e.message for e in errors), [e.message for e in errors]
    with pytest.raises(helm.HelmValuesError, match=re.escape(key)):
        helpers.render(override)


def value_paths(values: dict, schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the documented values: down to the leaves, stopping at
    free-form maps, lists and Kubernetes resource blocks (listed as a whole)."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and sub.get("additionalProperties") is False and key != "resources":
            out.extend(value_paths(value, sub, path + "."))
        else:
            out.append(path)
    return out


def test_every_value_is_strictly_typed_by_the_schema():
    def walk(values: dict, schema: dict, prefix: str = ""):
        assert schema.get("additionalProperties") is False, f"{prefix or 'root'} accepts unknown keys"
        for key, value in values.items():
            sub = schema["properties"].get(key)
            assert sub is not None, f"{prefix}{key} is not in values.schema.json"
            if isinstance(value, dict) and sub.get("additionalProperties") is False:
                walk(value, sub, f"{prefix}{key}.")

    with open(CHART / "values.yaml") as f:
        walk(yaml.safe_load(f), SCHEMA)


def test_readme_lists_every_value():
    with open(CHART / "values.yaml") as f:
        values = yaml.safe_load(f)
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", readme, re.MULTILINE))
    paths = value_paths(values, SCHEMA)
    missing = [p for p in paths if p not in documented]
    assert not missing, f"values missing from charts/paymesh/README.md: {missing}"
    stale = [d for d in documented if d not in paths]
    assert not stale, f"README documents values that do not exist: {stale}"
