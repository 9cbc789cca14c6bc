"""The Grafana dashboard is well-formed, reads only metrics a real sidecar
exports (checked against a scrape of a running paymesh-sidecar, not a list
kept by hand), and has a panel for every paymesh_* family it exports."""

from __future__ import annotations

import json
import re

import pytest

import scrape
from helpers import CHART

DASHBOARD = CHART / "files" / "paymesh-dashboard.json"

# Families that must have a panel: the contract's and every failure signal
# (issue #20). A scraped family missing here is not an error, so that a new
# metric can land before its panel; add it here with its panel.
REQUIRED = {
    "paymesh_requests_total",
    "paymesh_request_duration_seconds",
    "paymesh_throttled_total",
    "paymesh_inflight_requests",
    "paymesh_migration_percent",
    "paymesh_component_enabled",
    "paymesh_switch_events_total",
    "paymesh_telemetry_stale",
    "paymesh_telemetry_status",
    "paymesh_telemetry_cpu_percent",
    "paymesh_telemetry_mem_used_percent",
    "paymesh_config_reloads_total",
    "paymesh_config_reload_errors_total",
    "paymesh_migration_config_errors_total",
    "paymesh_access_log_dropped_total",
    "paymesh_etcd_connected",
    "paymesh_etcd_errors_total",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
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


@pytest.mark.binaries
def test_dashboard_reads_only_scraped_metrics_and_shows_every_failure():
    scraped = scrape.series_names(scrape.sidecar_metrics())
    used: set[str] = set()
    for expr in exprs(load()):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names = scrape.metric_names(expr)
        assert names, expr
        assert names <= scraped, f"{expr}\nreads metrics a sidecar does not export: {names - scraped}"
        used |= names
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in scraped}
    assert REQUIRED <= families, f"the sidecar no longer exports {REQUIRED - families}"
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert REQUIRED - shown == set(), f"metric families without a panel: {REQUIRED - shown}"


def test_metric_name_extraction():
    e = 'sum by (pod, le) (rate(paymesh_x_bucket{job=~"$job", code=~"5.."}[$__rate_interval])) / on (instance) process_max_fds > 0.8'
    assert scrape.metric_names(e) == {"paymesh_x_bucket", "process_max_fds"}


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
        "config reloads",
        "migration value refusals",
        "access-log drops",
        "etcd",
        "switches",
        "file descriptors",
        "memory",
    ):
        assert topic in titles, topic
    joined = "\n".join(exprs(load()))
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in joined
    assert "sum by (feature, route)" in joined
