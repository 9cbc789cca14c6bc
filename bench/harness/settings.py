"""What a benchmark run is: its scenarios, its knobs (flags or BENCH_*
environment variables) and where each process is pinned."""

import argparse
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DESCRIPTION = """`make bench`: paymesh-sidecar against haproxy, Envoy and no proxy, in one run,
with a report (target/bench/report.md, report.json) and a chart (target/bench/latency.svg)."""

SCENARIOS = {
    "closed_keepalive": "closed loop, keep-alive, GET",
    "fixed_rate": "open loop at a fixed rate, keep-alive, GET",
    "closed_post_1k": "closed loop, keep-alive, POST with a 1 KiB body",
    "closed_no_keepalive": "closed loop, a new connection per request, GET",
}
LAYOUTS = {
    "pinned": "proxy alone on one core; upstream and load generator on the other",
    "unpinned": "no pinning: proxy, upstream and load generator share every core (how a sidecar lives next to its app)",
}
PROXIES = ("sidecar", "haproxy", "envoy")
TRANSPORTS = {
    "tcp": "every proxy reaches the upstream over loopback TCP",
    "unix": "every proxy reaches the upstream over a Unix socket (the sidecar's `app: unix:…`)",
}
GET_PATH = "/v1/charges/ch_bench_0001"
POST_PATH = "/v1/charges"


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def parse_args(argv):
    smoke = os.environ.get("BENCH_SMOKE", "") not in ("", "0")
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", default=smoke, help="tiny load: 1 repetition, ~1-2 s per run")
    p.add_argument("--reps", type=int, default=env_int("BENCH_REPS", 0), help="repetitions (default 3; smoke 1)")
    p.add_argument("--seconds", type=int, default=env_int("BENCH_SECONDS", 0), help="closed-loop run length")
    p.add_argument("--fixed-seconds", type=int, default=env_int("BENCH_FIXED_SECONDS", 0), help="fixed-rate run length")
    p.add_argument("--rate", type=int, default=env_int("BENCH_RATE", 0), help="fixed rate (default: half the direct max)")
    p.add_argument("--connections", type=int, default=env_int("BENCH_CONNECTIONS", 32))
    p.add_argument("--workers", type=int, default=env_int("BENCH_WORKERS", 1), help="proxy worker threads (both)")
    p.add_argument("--body-bytes", type=int, default=128, help="upstream response body size")
    p.add_argument("--post-bytes", type=int, default=1024, help="request body of the POST scenario")
    p.add_argument("--targets", default="direct,sidecar,haproxy,envoy")
    p.add_argument("--layouts", default=os.environ.get("BENCH_LAYOUTS", ""),
                   help="pinned,unpinned (default both; smoke: pinned)")
    p.add_argument("--transport", choices=tuple(TRANSPORTS), default=os.environ.get("BENCH_TRANSPORT", "tcp"),
                   help="the proxies' hop to the upstream (default tcp); direct runs always use TCP")
    p.add_argument("--idle", default=os.environ.get("BENCH_IDLE", ""),
                   help="idle keep-alive connection counts, e.g. 1000,10000 (default; smoke 100,1000; 0 skips)")
    p.add_argument("--scale", action=argparse.BooleanOptionalAction,
                   default=os.environ.get("BENCH_SCALE", "1") not in ("", "0"),
                   help="the sidecar's CPU per request with 1 vs 10,000 configured clients and with few vs many "
                        "connections (default: yes)")
    p.add_argument("--scale-clients", type=int, default=env_int("BENCH_SCALE_CLIENTS", 10_000))
    p.add_argument("--scale-connections", default=os.environ.get("BENCH_SCALE_CONNECTIONS", ""),
                   help="few,many concurrent connections (default 100,10000; smoke 100,1000)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--rate-basis", choices=("slowest", "direct"), default=os.environ.get("BENCH_RATE_BASIS", "slowest"),
                   help="fixed rate = half the closed-loop max of the slowest target (default) or of direct")
    p.add_argument("--micro", action=argparse.BooleanOptionalAction, default=None,
                   help="run the criterion micro-benchmarks too (default: yes, except in a smoke run)")
    p.add_argument("--quiet-wait", type=int, default=env_int("BENCH_QUIET_WAIT", -1),
                   help="seconds to wait, at most, for other processes to calm down before each run (default 30)")
    p.add_argument("--retries", type=int, default=env_int("BENCH_RETRIES", -1),
                   help="runs again a run that other processes disturbed, up to this many times (default 1)")
    p.add_argument("--out", default=None, help="report directory (default target/bench; smoke: target/bench/smoke)")
    p.add_argument("--jobs", type=int, default=env_int("JOBS", 2))
    a = p.parse_args(argv)
    if a.micro is None:
        a.micro = os.environ.get("BENCH_MICRO", "0" if a.smoke else "1") not in ("", "0")
    if a.out is None:
        # A smoke run never overwrites the last real report.
        a.out = os.path.join(ROOT, "target", "bench", *(["smoke"] if a.smoke else []))
    a.reps = a.reps or (1 if a.smoke else 3)
    if a.quiet_wait < 0:
        a.quiet_wait = 0 if a.smoke else 30
    if a.retries < 0:
        a.retries = 0 if a.smoke else 1
    a.seconds = a.seconds or (1 if a.smoke else 10)
    a.fixed_seconds = a.fixed_seconds or (2 if a.smoke else 15)
    a.warmup_s = 1 if a.smoke else 3
    a.calib_s = 1 if a.smoke else 5
    a.targets = [t for t in a.targets.split(",") if t]
    a.layouts = [x for x in (a.layouts or ("pinned" if a.smoke else "pinned,unpinned")).split(",") if x]
    for x in a.layouts:
        if x not in LAYOUTS:
            p.error(f"unknown layout {x!r}; known: {', '.join(LAYOUTS)}")
    a.idle = [int(x) for x in (a.idle or ("100,1000" if a.smoke else "1000,10000")).split(",") if int(x) > 0]
    few_many = [int(x) for x in (a.scale_connections or ("100,1000" if a.smoke else "100,10000")).split(",")]
    if len(few_many) != 2:
        p.error("--scale-connections takes two counts: few,many")
    a.scale_connections = few_many
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    for s in a.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    return a


def pinning(layout="pinned"):
    """Proxy alone on one core; upstream and load generator on the other
    (on bigger machines, each on its own). Unpinned: no taskset at all
    (None everywhere), the scheduler spreads all three over every core."""
    if layout == "unpinned":
        return {"proxy": None, "upstream": None, "load": None}
    n = os.cpu_count() or 1
    if n >= 4:
        return {"proxy": "0", "upstream": "1", "load": "2"}
    if n >= 2:
        return {"proxy": "0", "upstream": "1", "load": "1"}
    return {"proxy": "0", "upstream": "0", "load": "0"}
