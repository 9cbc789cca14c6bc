"""A real scrape of a running paymesh-sidecar, for the tests that check metric
names (dashboard, alert rules) and the exposition format (promtool).

The sidecar runs without etcd and without an app (both are optional for
/metrics); every metric family it has is registered at start, so one scrape
right after start lists them all. One process per test session.
"""

from __future__ import annotations

import functools
import http.client
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import helpers

# Families the sidecar must export; a scrape without them is no real scrape.
ESSENTIAL = ("paymesh_requests_total", "process_open_fds")


@functools.lru_cache(maxsize=1)
def sidecar_metrics() -> str:
    """The text of GET /metrics of a freshly started sidecar."""
    binary = helpers.require_binary("paymesh-sidecar")
    d = Path(tempfile.mkdtemp(prefix="paymesh-scrape-"))
    listen, admin, app = helpers.free_ports(3)
    (d / "sidecar.yaml").write_text(
        f"""listen: "127.0.0.1:{listen}"
app: "127.0.0.1:{app}"
admin: "127.0.0.1:{admin}"
workers: 1
clients:
  - id: demo
    api_key_sha256: "{helpers.DEMO_KEY_SHA256}"
migration:
  etcd_endpoints: []
  cache_file: {d}/migration.json
overload:
  telemetry_file: {d}/telemetry.json
  events_file: {d}/switch-events.jsonl
access_log:
  path: {d}/access.log
"""
    )
    log = open(d / "sidecar.log", "wb")
    proc = subprocess.Popen([str(binary), "--config", str(d / "sidecar.yaml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                text = resp.read().decode()
                conn.close()
                if resp.status == 200 and all(f"# TYPE {f} " in text for f in ESSENTIAL):
                    return text
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no scrape from paymesh-sidecar:\n{(d / 'sidecar.log').read_text()[-3000:]}")
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def series_names(text: str) -> set[str]:
    """Every sample name in a scrape (histograms as _bucket, _sum, _count)."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


# PromQL words that look like metric names but are not.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "by", "without", "on", "ignoring",
    "and", "or", "unless", "group_left", "group_right", "histogram_quantile", "le", "offset", "bool",
    "clamp_min", "clamp_max", "abs", "time", "topk", "bottomk", "label_replace", "vector", "scalar",
    "deriv", "delta", "idelta", "changes", "resets", "absent", "max_over_time", "min_over_time",
    "avg_over_time", "quantile_over_time", "timestamp", "group", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label
    matchers, strings and durations, that are not functions or keywords."""
    e = re.sub(r'"[^"]*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "[]", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)  # grouping labels
    e = re.sub(r"\$\{?[A-Za-z_]+\}?", "", e)  # Grafana variables
    names = set(re.findall(r"(?<![A-Za-z0-9_:.])[a-zA-Z_:][a-zA-Z0-9_:]*(?![A-Za-z0-9_:]*\s*\()", e))
    return {n for n in names if n.lower() not in _PROMQL_WORDS and not re.fullmatch(r"\d+[a-z]*", n)}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise AssertionError(
            "promtool not found: install Debian's prometheus package (apt-get install prometheus), "
            "or run scripts/deps.sh"
        )
    return path
