#!/usr/bin/env python3
"""Tests of the harness's pure parts on canned data: the load generators'
output parsers, the statistics, the targets, the Markdown report and the
SVG chart. No network, no processes; runs in well under a second.

`python3 bench/harness/selftest.py` (also run by `cargo test -p paymesh-bench`).
"""

import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart  # noqa: E402
import configs  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402

WRK_OUT = """Running 3s test @ http://127.0.0.1:19080/v1/charges/ch_1
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.24ms    3.61ms  34.69ms   87.99%
    Req/Sec    13.26k     6.53k   21.22k    43.33%
  Latency Distribution
     50%    1.69ms
     75%    3.37ms
     90%    7.41ms
     99%   19.62ms
  39638 requests in 3.01s, 8.35MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  13179.06
Transfer/sec:      2.78MB
"""

OHA_OUT = """{
  "summary": {"successRate": 1.0, "total": 2.0005, "slowest": 0.01, "fastest": 0.0001, "average": 0.0007,
              "requestsPerSec": 43627.1, "totalData": 1, "sizePerRequest": 128, "sizePerSec": 1.0},
  "latencyPercentiles": {"p10": 0.0002, "p25": 0.0004, "p50": 0.000741, "p75": 0.0009, "p90": 0.0013,
                         "p95": 0.002, "p99": 0.005884, "p99.9": 0.0078, "p99.99": 0.0083},
  "statusCodeDistribution": {"200": 87360, "503": 2},
  "errorDistribution": {"aborted due to deadline": 5}
}"""


def run(scenario, target, rep, rps, lat_us=None, cpu=None, rss=None, rate=None):
    lat = {k: v / 1e6 for k, v in (lat_us or {}).items()}
    r = {"scenario": scenario, "target": target, "rep": rep, "foreign_cpu_cores": 0.01,
         "load": {"rps": rps, "requests": int(rps * 10), "errors": 0, "latency_s": lat, "target_rate": rate},
         "upstream_cpu_us_per_req": 5.0}
    if target != "direct":
        r.update(proxy_cpu_us_per_req=cpu, proxy_cpu_util=0.99, proxy_peak_rss_kib=rss, access_log_lines_per_req=1.0)
    return r


class Parsers(unittest.TestCase):
    def test_wrk(self):
        r = load.parse_wrk(WRK_OUT)
        self.assertEqual(r["requests"], 39638)
        self.assertAlmostEqual(r["duration_s"], 3.01)
        self.assertAlmostEqual(r["rps"], 13179.06)
        self.assertAlmostEqual(r["latency_s"]["p99"], 0.01962)
        self.assertAlmostEqual(r["latency_s"]["p50"], 0.00169)
        self.assertEqual(r["non_2xx"], 5)
        self.assertEqual(r["errors"], 6)  # 5 non-2xx + 1 timeout; reads are closes

    def test_wrk_units(self):
        self.assertAlmostEqual(load._seconds("850.00us"), 0.00085)
        self.assertAlmostEqual(load._seconds("1.50s"), 1.5)
        with self.assertRaises(ValueError):
            load.parse_wrk("nothing here")

    def test_oha(self):
        r = load.parse_oha(OHA_OUT)
        self.assertEqual(r["requests"], 87362)
        self.assertEqual(r["ok"], 87360)
        self.assertEqual(r["errors"], 2)  # the 503s; deadline aborts are not failures
        self.assertAlmostEqual(r["latency_s"]["p99.9"], 0.0078)
        self.assertAlmostEqual(r["rps"], 43627.1)


class Reports(unittest.TestCase):
    def setUp(self):
        lat_d = {"p50": 100, "p90": 150, "p99": 300, "p99.9": 500, "p99.99": 900}
        self.runs = []
        for rep in range(3):
            self.runs += [
                run("closed_keepalive", "direct", rep, 90000 + rep),
                run("closed_keepalive", "sidecar", rep, 60000 + 1000 * rep, cpu=15.0, rss=9000 + rep),
                run("closed_keepalive", "envoy", rep, 20000, cpu=45.0, rss=70000),
                run("fixed_rate", "direct", rep, 10000, lat_us=lat_d, rate=10000),
                run("fixed_rate", "sidecar", rep, 10000, lat_us={k: v + 50 + rep for k, v in lat_d.items()},
                    cpu=16.0, rss=9500, rate=10000),
                run("fixed_rate", "envoy", rep, 9000, lat_us={k: v + 400 for k, v in lat_d.items()}, cpu=40.0,
                    rss=71000, rate=10000),
            ]

    def test_summary_medians_and_spread(self):
        s = report.summarize(self.runs, ["closed_keepalive", "fixed_rate"])
        sc = s["closed_keepalive"]["sidecar"]["rps"]
        self.assertEqual((sc["median"], sc["min"], sc["max"], sc["n"]), (61000, 60000, 62000, 3))
        self.assertTrue(s["fixed_rate"]["sidecar"]["sustained"])
        self.assertFalse(s["fixed_rate"]["envoy"]["sustained"])  # 9000 of 10000

    def test_added_latency_is_paired(self):
        a = report.added_latency(self.runs)
        self.assertAlmostEqual(a["sidecar"]["p99"]["median"], 51)
        self.assertAlmostEqual(a["sidecar"]["p99"]["min"], 50)
        self.assertAlmostEqual(a["envoy"]["p50"]["median"], 400)

    def test_targets(self):
        s = report.summarize(self.runs, ["closed_keepalive", "fixed_rate"])
        a = report.added_latency(self.runs)
        mem = {"sidecar": {"load_peak_kib": 9500}}
        micro = {"benchmarks": [{"id": "stack/get", "median_ns": 1300.0, "mean_ns": 1310.0},
                                {"id": "stack/post_1k", "median_ns": 2100.0, "mean_ns": 2200.0}]}
        t = {x["name"].split(" (")[0]: x for x in report.targets(s, a, mem, micro)}
        self.assertTrue(t["throughput vs Envoy"]["met"])  # 61000 / 20000
        self.assertTrue(t["added p99 latency at the fixed rate"]["met"])
        self.assertTrue(t["sidecar RSS under load"]["met"])
        self.assertFalse(t["per-request sidecar work"]["met"])  # worst stack bench 2.1 µs

    def test_markdown_and_ratios(self):
        s = report.summarize(self.runs, ["closed_keepalive", "fixed_rate"])
        doc = {
            "settings": {"reps": 3, "closed_s": 10, "fixed_s": 15, "connections": 32, "rate_basis": "test",
                         "proxy_cpus": "0", "upstream_cpus": "1", "load_cpus": "1", "workers": 1},
            "generated_at": "now", "command": "make bench", "versions": {"git": "x", "envoy": "e", "wrk": "w",
                                                                         "oha": "o"},
            "machine": {"cpu_model": "cpu", "cpus": 2, "kernel": "k"}, "load_average_start": "0.1",
            "load_average_end": "0.2", "fixed_rate": 10000, "summary": s,
            "scenarios": {"closed_keepalive": "closed", "fixed_rate": "fixed"},
            "added_latency_us": report.added_latency(self.runs), "ratios": report.ratios(s),
            "memory": {"sidecar": {"idle_kib": 7000, "load_peak_kib": 9500, "hwm_kib": 9600}},
            "micro": {"skipped": "no"}, "targets": [], "fairness": "f", "notes": ["n"],
        }
        self.assertAlmostEqual(doc["ratios"]["closed_keepalive"]["sidecar_over_envoy_rps"], 3.05)
        self.assertAlmostEqual(doc["ratios"]["closed_keepalive"]["envoy_over_sidecar_cpu_per_req"], 3.0)
        md = report.markdown(doc)
        self.assertIn("| closed | sidecar | 61,000 (60,000–62,000) |", md)
        self.assertIn("![latency percentiles](latency.svg)", md)


class Chart(unittest.TestCase):
    def test_svg_is_well_formed(self):
        series = {t: [(p, 100.0 * (i + 1) * (k + 1)) for i, p in enumerate(report.PERCENTILES)]
                  for k, t in enumerate(report.TARGETS)}
        root = ET.fromstring(chart.latency_svg(series, title="t <&>", subtitle="s"))
        self.assertEqual(len(root.findall("{http://www.w3.org/2000/svg}polyline")), 3)
        ET.fromstring(chart.latency_svg({}, title="empty"))


class Configs(unittest.TestCase):
    def test_post_body_and_lua(self):
        body = configs.post_body(1024)
        self.assertEqual(len(body), 1024)
        self.assertIn('"currency":"usd"', body)
        self.assertIn('wrk.method = "POST"', configs.wrk_post_lua(body))

    def test_envoy_config_is_json_with_the_key(self):
        import json

        doc = json.loads(configs.envoy_yaml(listen_port=1, upstream_port=2, admin_port=3, access_log="/x"))
        text = json.dumps(doc)
        self.assertIn(f"Bearer {configs.API_KEY}", text)
        self.assertIn("local_ratelimit", text)


if __name__ == "__main__":
    unittest.main(verbosity=1)
