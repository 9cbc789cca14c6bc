"""The Grafana dashboard is well-formed and uses the sidecar's metric names,
and only them."""

from __future__ import annotations

import json
import re

from helpers import CHART

DASHBOARD = CHART / "files" / "paymesh-dashboard.json"

# The metric contract (DESIGN.md) plus the telemetry gauges the sidecar exports.
KNOWN = {
    "paymesh_requests_total",
    "paymesh_request_duration_seconds_bucket",
    "paymesh_throttled_total",
    "paymesh_inflight_requests",
    "paymesh_migration_percent",
    "paymesh_component_enabled",
    "paymesh_switch_events_total",
    "paymesh_telemetry_stale",
    "paymesh_telemetry_cpu_percent",
    "paymesh_telemetry_mem_used_percent",
}


def load() -> dict:
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p["type"] != "row"]


def exprs(d: dict) -> list[str]:
    return [t["expr"] for p in panels(d) for t in p.get("targets", [])]


def test_dashboard_is_importable():
    d = load()
    assert d["uid"] == "paymesh-overview" and d["title"] == "paymesh"
    assert isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for p in panels(d):
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]


def test_dashboard_uses_every_metric_and_no_other():
    used = set()
    for expr in exprs(load()):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names = set(re.findall(r"\bpaymesh_[a-z_]+\b", expr))
        assert names, expr
        used |= names
    assert used - KNOWN == set(), f"unknown metrics: {used - KNOWN}"
    assert KNOWN - used == set(), f"metrics without a panel: {KNOWN - used}"


def test_dashboard_covers_the_issue():
    titles = " | ".join(p["title"].lower() for p in panels(load()))
    for topic in (
        "requests by feature and route",
        "error",
        "latency",
        "throttled",
        "migration percent",
        "components enabled",
        "telemetry",
    ):
        assert topic in titles, topic
    joined = "\n".join(exprs(load()))
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in joined
    assert "sum by (feature, route)" in joined
