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
import idle  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import settings  # noqa: E402
import tools  # noqa: E402

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


def run(scenario, target, rep, rps, lat_us=None, cpu=None, rss=None, rate=None, layout="pinned"):
    lat = {k: v / 1e6 for k, v in (lat_us or {}).items()}
    r = {"scenario": scenario, "target": target, "rep": rep, "layout": layout, "foreign_cpu_cores": 0.01,
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
                run("closed_keepalive", "haproxy", rep, 70000, cpu=12.0, rss=6000),
                run("fixed_rate", "direct", rep, 10000, lat_us=lat_d, rate=10000),
                run("fixed_rate", "sidecar", rep, 10000, lat_us={k: v + 50 + rep for k, v in lat_d.items()},
                    cpu=16.0, rss=9500, rate=10000),
                run("fixed_rate", "envoy", rep, 9000, lat_us={k: v + 400 for k, v in lat_d.items()}, cpu=40.0,
                    rss=71000, rate=10000),
                run("fixed_rate", "haproxy", rep, 10000, lat_us={k: v + 20 for k, v in lat_d.items()}, cpu=14.0,
                    rss=6100, rate=10000),
            ]

    def layouts(self):
        s = report.summarize(self.runs, ["closed_keepalive", "fixed_rate"])
        a = report.added_latency(self.runs)
        mem = {"sidecar": {"idle_kib": 7000, "load_peak_kib": 9500, "hwm_kib": 9600}}
        return {"pinned": {"description": "d", "pinning": {"proxy": "0", "upstream": "1", "load": "1"},
                           "fixed_rate": 10000, "rate_basis": "test", "summary": s, "added_latency_us": a,
                           "ratios": report.ratios(s), "memory": mem, "headline": report.headline(s, a, mem)}}

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

    def test_headline_is_cpu_per_request(self):
        h = self.layouts()["pinned"]["headline"]
        self.assertEqual(list(h["rows"]), ["sidecar", "haproxy", "envoy"])
        self.assertAlmostEqual(h["rows"]["sidecar"]["cpu_us_per_req"]["median"], 15.0)
        self.assertAlmostEqual(h["rows"]["haproxy"]["cpu_fixed_us_per_req"]["median"], 14.0)
        self.assertAlmostEqual(h["rows"]["sidecar"]["added_p99_us"]["median"], 51)
        self.assertAlmostEqual(h["sidecar_over_haproxy"], 1.25)
        self.assertAlmostEqual(h["sidecar_over_envoy"], 15 / 45)

    def test_targets(self):
        idle_sum = report.idle_summary([
            {"target": "sidecar", "n": 1000, "held": 1000, "failed": 0, "rss_before_kib": 9000,
             "rss_with_kib": 9000 + 10_000},
            {"target": "sidecar", "n": 100, "held": 100, "failed": 0, "rss_before_kib": 9000, "rss_with_kib": 9400},
        ])
        scale = report.scale_summary(
            [{"kind": "clients", "variant": v, "rep": 0, "cpu_us_per_req": c, "rps": 1.0}
             for v, c in ((1, 15.0), (10000, 15.9))]
            + [{"kind": "connections", "variant": v, "rep": 0, "cpu_us_per_req": c, "rps": 1.0}
               for v, c in ((100, 15.0), (10000, 18.0))]
            + [{"kind": "connections_haproxy", "variant": v, "rep": 0, "cpu_us_per_req": c, "rps": 1.0}
               for v, c in ((100, 10.0), (10000, 15.0))])
        micro = {"benchmarks": [{"id": "stack/get", "median_ns": 1300.0, "mean_ns": 1310.0},
                                {"id": "stack/post_1k", "median_ns": 2100.0, "mean_ns": 2200.0}]}
        t = {x["name"].split(" (")[0]: x for x in report.targets(self.layouts(), idle_sum, scale, micro)}
        hx = t["sidecar CPU per request vs haproxy's"]
        self.assertFalse(hx["met"])  # 15 vs 12 µs
        self.assertEqual(hx["by"], "missed by 0.25× (25 %)")
        en = t["Envoy's CPU per request over the sidecar's"]
        self.assertTrue(en["met"])  # 45 / 15 = 3×
        self.assertEqual(en["by"], "met by 1.00× (50 %)")
        self.assertTrue(t["throughput vs Envoy"]["met"])  # 61000 / 20000
        p99 = t["added p99 at the fixed rate of 10,000 req/s"]
        self.assertTrue(p99["met"])
        self.assertEqual(p99["by"], "met by 199 µs (80 %)")
        self.assertTrue(t["sidecar RSS under load"]["met"])
        idle_t = t["sidecar RSS per idle keep-alive connection"]
        self.assertFalse(idle_t["met"])  # the largest count: 10,000 KiB / 1,000 = 10.24 KB
        self.assertEqual(idle_t["shown"], "10.2 KB")
        clients = t["sidecar CPU per request, 10,000 vs 1 configured clients"]
        self.assertTrue(clients["met"])  # 1.06×
        self.assertEqual(clients["by"], "met by 4 points (grew +6 %)")
        conns = t["sidecar CPU per request, 10,000 vs 100 concurrent connections"]
        self.assertFalse(conns["met"])  # 1.2×, whatever haproxy's growth
        self.assertEqual(conns["shown"], "1.20× (haproxy 1.50× in the same run)")
        self.assertNotIn("sidecar CPU per request, 10,000 vs 100 concurrent connections, haproxy", t)
        self.assertFalse(t["per-request sidecar work"]["met"])  # worst stack bench 2.1 µs

    def test_idle_and_scale_summaries(self):
        rows = report.idle_summary([{"target": "envoy", "n": 10, "held": 8, "failed": 2, "rss_before_kib": 100,
                                     "rss_with_kib": 110}])["envoy"]
        self.assertAlmostEqual(rows[0]["bytes_per_conn"], 10 * 1024 / 8)
        sc = report.scale_summary([{"kind": "clients", "variant": v, "rep": r, "cpu_us_per_req": c, "rps": 5.0}
                                   for r, (v, c) in enumerate(((1, 10.0), (1, 12.0), (10000, 13.5)))])
        self.assertEqual((sc["clients"]["few"], sc["clients"]["many"]), (1, 10000))
        self.assertAlmostEqual(sc["clients"]["ratio"], 13.5 / 11.0)
        self.assertTrue(sc["clients"]["grows"])
        self.assertNotIn("connections", sc)

    def test_markdown_and_ratios(self):
        layouts = self.layouts()
        doc = {
            "settings": {"reps": 3, "closed_s": 10, "fixed_s": 15, "connections": 32, "workers": 1},
            "generated_at": "now", "command": "make bench",
            "versions": {"git": "x", "envoy": "e", "haproxy": "h", "wrk": "w", "oha": "o"},
            "machine": {"cpu_model": "cpu", "cpus": 2, "kernel": "k"}, "load_average_start": "0.1",
            "load_average_end": "0.2", "layouts": layouts,
            "scenarios": {"closed_keepalive": "closed", "fixed_rate": "fixed"},
            "idle_summary": report.idle_summary([{"target": "haproxy", "n": 100, "held": 100, "failed": 0,
                                                  "rss_before_kib": 6000, "rss_with_kib": 6200}]),
            "scale": report.scale_summary([{"kind": k, "variant": v, "rep": 0, "cpu_us_per_req": c, "rps": 6e4}
                                           for k in ("clients", "connections_haproxy")
                                           for v, c in ((1, 15.0), (10000, 15.0 if k == "clients" else 30.0))]),
            "micro": {"skipped": "no"}, "fairness": "f", "notes": ["n"],
        }
        doc["targets"] = report.targets(layouts, doc["idle_summary"], doc["scale"], doc["micro"])
        r = layouts["pinned"]["ratios"]["closed_keepalive"]
        self.assertAlmostEqual(r["sidecar_over_envoy_rps"], 3.05)
        self.assertAlmostEqual(r["envoy_over_sidecar_cpu_per_req"], 3.0)
        self.assertAlmostEqual(r["sidecar_over_haproxy_cpu_per_req"], 1.25)
        md = report.markdown(doc)
        self.assertLess(md.index("## Headline: proxy CPU per request"), md.index("## Targets"))
        self.assertIn("| sidecar | **15.0 (15.0–15.0)** | 16.0 (16.0–16.0) | 61,000 (60,000–62,000) | "
                      "51 µs (50–52) / 51 µs (50–52) | 9.3 MiB |", md)
        self.assertIn("Sidecar CPU per request: 1.25× haproxy's; 0.33× Envoy's.", md)
        self.assertIn("| sidecar CPU per request vs haproxy's (pinned) | 1.25× (15.0 vs 12.0 µs) | ≤ 1.00× haproxy's "
                      "| **missed** | missed by 0.25× (25 %) |", md)
        self.assertIn("| haproxy | 100 | 100 | 0 | 5.9 MiB | 6.1 MiB | 2.0 KB |", md)
        self.assertIn("| configured clients | 1 | 10,000 | 15.0 | 15.0 | 60,000 | 60,000 | 1.00× | 0 | flat |", md)
        self.assertIn("| concurrent connections, haproxy | 1 | 10,000 | 15.0 | 30.0 | 60,000 | 60,000 | 2.00× | 0 "
                      "| **grows** |", md)
        self.assertIn("| closed | sidecar | 61,000 (60,000–62,000) |", md)
        self.assertIn("![latency percentiles](latency.svg)", md)


class Chart(unittest.TestCase):
    def test_svg_is_well_formed(self):
        series = {t: [(p, 100.0 * (i + 1) * (k + 1)) for i, p in enumerate(report.PERCENTILES)]
                  for k, t in enumerate(report.TARGETS)}
        root = ET.fromstring(chart.latency_svg(series, title="t <&>", subtitle="s"))
        self.assertEqual(len(root.findall("{http://www.w3.org/2000/svg}polyline")), len(report.TARGETS))
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
        self.assertIn('"port_value": 2', text)

    def test_envoy_reaches_a_unix_upstream_through_a_pipe(self):
        import json

        doc = json.loads(configs.envoy_yaml(listen_port=1, upstream_port=2, admin_port=3, access_log="/x",
                                            upstream_socket="/w/up.sock"))
        cluster = doc["static_resources"]["clusters"][0]
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        self.assertEqual(endpoint["address"], {"pipe": {"path": "/w/up.sock"}})


class Haproxy(unittest.TestCase):
    def test_config(self):
        cfg = configs.haproxy_cfg(listen_port=1, upstream_port=2, threads=3, maxconn=9936)
        for line in ("nbthread 3", "maxconn 9936", "mode http", "http-reuse always", "option http-keep-alive",
                     "bind 127.0.0.1:1", "server app 127.0.0.1:2", f"monitor-uri {configs.HAPROXY_READY}"):
            self.assertIn(line, cfg)
        self.assertNotIn("log ", cfg)
        unix = configs.haproxy_cfg(listen_port=1, upstream_port=2, threads=3, maxconn=9936, upstream_socket="/w/u")
        self.assertIn("server app unix@/w/u", unix)
        self.assertNotIn("127.0.0.1:2", unix)

    def test_version(self):
        self.assertEqual(tools.haproxy_version.__doc__.split("`")[1], "haproxy 2.6.12")


class SidecarConfig(unittest.TestCase):
    def test_many_clients_have_distinct_keys(self):
        text = configs.sidecar_yaml(listen="a", app="b", admin="c", workers=1, work_dir="/w", max_connections=9936,
                                    clients=1000)
        digests = [ln.split('api_key_sha256: "')[1][:64] for ln in text.splitlines() if "api_key_sha256" in ln]
        self.assertEqual(len(digests), 1000)
        self.assertEqual(len(set(digests)), 1000)
        self.assertIn("max_connections: 9936", text)

    def test_fd_budget_is_the_sidecars_rule(self):
        self.assertEqual(configs.fd_budget(20000), 9936)
        self.assertEqual(configs.fd_budget(65536), 32704)


class Idle(unittest.TestCase):
    def test_response_complete(self):
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        self.assertEqual(idle.response_complete(head + b"ab"), (False, 200))
        self.assertEqual(idle.response_complete(head + b"abcde"), (True, 200))
        self.assertEqual(idle.response_complete(b"HTTP/1.1 401 No\r\n"), (False, None))
        chunked = b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        self.assertEqual(idle.response_complete(chunked), (False, 503))
        self.assertEqual(idle.response_complete(chunked + b"0\r\n\r\n"), (True, 503))
        with self.assertRaises(ValueError):
            idle.response_complete(b"garbage\r\n\r\n")

    def test_request(self):
        r = idle.request_bytes("/p", ["Authorization: Bearer k"])
        self.assertTrue(r.startswith(b"GET /p HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
        self.assertTrue(r.endswith(b"Authorization: Bearer k\r\n\r\n"))


class Settings(unittest.TestCase):
    def test_layouts_and_smoke(self):
        old = {k: os.environ.pop(k, None) for k in ("BENCH_SMOKE", "BENCH_LAYOUTS", "BENCH_IDLE", "BENCH_TRANSPORT")}
        try:
            a = settings.parse_args([])
            self.assertEqual(a.layouts, ["pinned", "unpinned"])
            self.assertEqual(a.idle, [1000, 10000])
            self.assertEqual(a.scale_connections, [100, 10000])
            self.assertEqual(a.targets, ["direct", "sidecar", "haproxy", "envoy"])
            self.assertEqual(a.transport, "tcp")
            self.assertEqual(settings.parse_args(["--transport", "unix"]).transport, "unix")
            a = settings.parse_args(["--smoke"])
            self.assertEqual((a.layouts, a.idle, a.scale_connections), (["pinned"], [100, 1000], [100, 1000]))
            self.assertEqual(settings.parse_args(["--idle", "0"]).idle, [])
        finally:
            for k, v in old.items():
                if v is not None:
                    os.environ[k] = v
        self.assertEqual(settings.pinning("unpinned"), {"proxy": None, "upstream": None, "load": None})
        self.assertEqual(load._pinned(None), [])
        self.assertEqual(load._pinned("1"), ["taskset", "-c", "1"])


if __name__ == "__main__":
    unittest.main(verbosity=1)
