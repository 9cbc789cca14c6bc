"""The chart's alert rules, run by Prometheus' own rule engine: `promtool test
rules` on the rendered PrometheusRule groups, with one case per alert that
fires it and one that does not; `promtool check rules`; every metric an
alert reads exists in a real scrape of a running sidecar; and `promtool check
metrics` on that scrape.

The rules under test keep their expressions, `for`, labels and runbook_url
exactly as rendered; summary and description are dropped there, because
promtool compares annotations verbatim and those are prose (that Helm keeps
their Prometheus templates intact is test_chart_render's job)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import helpers
import scrape
from helpers import NAMESPACE

POD = {"namespace": NAMESPACE, "pod": "paymesh-0", "instance": "10.0.0.1:9901", "job": "paymesh"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {**POD, **labels}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def pod_alert(severity: str, **extra: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": severity, "namespace": NAMESPACE, "pod": POD["pod"], **extra}}


def pod_warning(at: str, name: str, fire: str, quiet: str, **labels: str) -> tuple[str, list, dict, list]:
    """The case of a warning about one pod read from one series: its values
    `fire` fire it, its values `quiet` do not."""
    return (at, [series(name, fire, **labels)], pod_alert("warning"), [series(name, quiet, **labels)])


# alert -> (eval time, series that fire it, the labels it fires with,
#           series that must not fire it)
CASES: dict[str, tuple[str, list, dict, list]] = {
    "PaymeshHighErrorRate": (
        "15m",
        [
            series("paymesh_requests_total", "0+10x30", feature="charge", route="orchestration", code="5xx"),
            series("paymesh_requests_total", "0+10x30", feature="charge", route="orchestration", code="2xx"),
        ],
        {"exp_labels": {"severity": "critical", "namespace": NAMESPACE, "feature": "charge", "route": "orchestration"}},
        [
            series("paymesh_requests_total", "0x30", feature="charge", route="orchestration", code="5xx"),
            series("paymesh_requests_total", "0+1000x30", feature="charge", route="orchestration", code="2xx"),
        ],
    ),
    "PaymeshThrottling": (
        "20m",
        [series("paymesh_throttled_total", "0+600x30", client="checkout")],
        {"exp_labels": {"severity": "warning", "namespace": NAMESPACE, "client": "checkout"}},
        [series("paymesh_throttled_total", "0+6x30", client="checkout")],
    ),
    "PaymeshComponentsShed": (
        "20m",
        [series("paymesh_component_enabled", "0x30", component="access_log")],
        pod_alert("warning", component="access_log"),
        [series("paymesh_component_enabled", "1x30", component="access_log")],
    ),
    "PaymeshSwitchFlapping": pod_warning(
        "70m", "paymesh_switch_events_total", "0+5x90", "0x30 1x30 2x30", component="access_log", state="off"
    ),
    "PaymeshTelemetryStale": pod_warning("10m", "paymesh_telemetry_stale", "1x30", "0x30"),
    "PaymeshEtcdDisconnected": pod_warning("10m", "paymesh_etcd_connected", "0x30", "1x30"),
    "PaymeshEtcdAccessDenied": (
        "20m",
        [series("paymesh_etcd_errors_total", "0+1x30", kind="auth")],
        pod_alert("critical", kind="auth"),
        # Connect errors are PaymeshEtcdDisconnected's; an old refusal that
        # stopped growing is over.
        [
            series("paymesh_etcd_errors_total", "0+1x30", kind="connect"),
            series("paymesh_etcd_errors_total", "0+1x30", kind="watch"),
            series("paymesh_etcd_errors_total", "4x30", kind="permission"),
        ],
    ),
    "PaymeshMigrationValueRefused": pod_warning("10m", "paymesh_migration_config_errors_total", "0x5 1x25", "3x30"),
    "PaymeshConfigReloadRefused": pod_warning("10m", "paymesh_config_reload_errors_total", "0x5 1x25", "2x30"),
    "PaymeshAccessLogDropping": pod_warning("20m", "paymesh_access_log_dropped_total", "0+10x30", "5x30"),
    "PaymeshFileDescriptorsNearLimit": (
        "20m",
        [
            series("process_open_fds", "900x30"),
            series("process_max_fds", "1000x30"),
            series("paymesh_inflight_requests", "0x30"),
        ],
        pod_alert("critical"),
        # As many fds, but in a process that is not a sidecar (no paymesh_*
        # series from its instance); and a sidecar at half its limit.
        [
            series("process_open_fds", "900x30", instance="10.0.0.9:8080", pod="other-0"),
            series("process_max_fds", "1000x30", instance="10.0.0.9:8080", pod="other-0"),
            series("process_open_fds", "500x30"),
            series("process_max_fds", "1000x30"),
            series("paymesh_inflight_requests", "0x30"),
        ],
    ),
}


def rendered_rules(values: dict[str, Any] | None = None) -> dict[str, Any]:
    merged = helpers.deep_merge({"prometheusRule": {"enabled": True}}, values or {})
    groups = helpers.render(merged).get("PrometheusRule")["spec"]["groups"]
    for g in groups:
        for r in g["rules"]:
            r["annotations"] = {"runbook_url": r["annotations"]["runbook_url"]}
    return {"groups": groups}


def runbook(alert: str) -> dict[str, str]:
    url = helpers.chart_defaults()["prometheusRule"]["runbookUrl"]
    return {"runbook_url": f"{url}#{alert.lower()}"}


def promtool_test(tmp_path: Path, rules: dict[str, Any], tests: list[dict[str, Any]]) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run(
        [scrape.promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def alert_test(alert: str, at: str, input_series: list, exp_alerts: list, **name: str) -> dict[str, Any]:
    """One promtool test (optionally `name`d): over `input_series` a minute
    apart, `alert` at `at` is exactly `exp_alerts`."""
    return {
        **name,
        "interval": "1m",
        "input_series": input_series,
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": exp_alerts}],
    }


def case_tests(alert: str) -> list[dict[str, Any]]:
    at, fire, fired, quiet = CASES[alert]
    expected = {**fired, "exp_annotations": runbook(alert)}
    return [
        alert_test(alert, at, fire, [expected], name=f"{alert} fires"),
        alert_test(alert, at, quiet, [], name=f"{alert} stays quiet"),
    ]


def test_every_alert_has_a_case():
    alerts = {r["alert"] for g in rendered_rules()["groups"] for r in g["rules"]}
    assert alerts == set(CASES)


def test_promtool_checks_the_rules(tmp_path: Path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules(), sort_keys=False))
    done = subprocess.run([scrape.promtool(), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_and_stays_quiet(alert: str, tmp_path: Path):
    promtool_test(tmp_path, rendered_rules(), case_tests(alert))


def test_etcd_access_denied_needs_a_lasting_refusal(tmp_path: Path):
    """A permission error that keeps growing fires, labelled with its kind; a
    short burst (a password changed in etcd before its Secret, then fixed)
    does not last etcdAccessDeniedFor and stays quiet."""
    rules = rendered_rules()
    lasting = series("paymesh_etcd_errors_total", "0+2x30", kind="permission")
    burst = series("paymesh_etcd_errors_total", "0 1 2 3x30", kind="auth", pod="paymesh-1")
    expected = {**pod_alert("critical", kind="permission"), "exp_annotations": runbook("PaymeshEtcdAccessDenied")}
    promtool_test(tmp_path, rules, [alert_test("PaymeshEtcdAccessDenied", "20m", [lasting, burst], [expected])])


def test_the_selector_is_configurable(tmp_path: Path):
    """A PodMonitor's job label: series with it fire, the same series from
    another job do not."""
    rules = rendered_rules({"prometheusRule": {"selector": 'job="payments/paymesh"'}})
    other = series("paymesh_etcd_connected", "0x30")
    ours = series("paymesh_etcd_connected", "0x30", job="payments/paymesh", pod="paymesh-1")
    expected = {
        "exp_labels": {"severity": "warning", "namespace": NAMESPACE, "pod": "paymesh-1"},
        "exp_annotations": runbook("PaymeshEtcdDisconnected"),
    }
    promtool_test(tmp_path, rules, [alert_test("PaymeshEtcdDisconnected", "10m", [other, ours], [expected])])


@pytest.mark.binaries
def test_alerts_read_only_scraped_metrics():
    scraped = scrape.series_names(scrape.sidecar_metrics())
    for g in rendered_rules()["groups"]:
        for r in g["rules"]:
            names = scrape.metric_names(r["expr"])
            assert names and names <= scraped, f"{r['alert']} reads {names - scraped}, which no sidecar exports"


@pytest.mark.binaries
def test_promtool_checks_a_real_scrape():
    done = subprocess.run(
        [scrape.promtool(), "check", "metrics"], input=scrape.sidecar_metrics(), capture_output=True, text=True
    )
    # promtool also prints lint advice (counters without _total, …); only
    # errors fail it.
    assert done.returncode == 0, done.stdout + done.stderr
