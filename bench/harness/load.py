"""Load generators: wrk for closed-loop throughput, oha for open-loop
fixed-rate latency with latency correction.

wrk (C, one epoll loop per thread) is the cheaper of the two, which matters
here because the load generator shares a core with the upstream; it has no
fixed-rate mode. oha's `-q RATE --latency-correction` schedules requests at
a fixed rate and measures each latency from the time the request was due,
so a stall is charged to every request it delayed (no coordinated
omission). Each runner returns a plain dict; the parsers are pure
functions, tested on canned output by selftest.py.
"""

import json
import re
import subprocess

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out):
    """The numbers of a `wrk --latency` report."""
    res = {"tool": "wrk"}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if not m:
        raise ValueError("wrk printed no request count:\n" + out)
    res["requests"] = int(m.group(1))
    res["duration_s"] = float(m.group(2)) * _UNITS[m.group(3)]
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else res["requests"] / res["duration_s"]
    lat = {}
    for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M):
        lat[f"p{p}"] = _seconds(v)
    res["latency_s"] = lat
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
        if m
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    # A closed connection that the server announced is not an error.
    res["errors"] = res["non_2xx"] + sum(v for k, v in res["socket_errors"].items() if k != "read")
    return res


def parse_oha(text):
    """The numbers of an `oha --output-format json` report."""
    doc = json.loads(text)
    summary = doc["summary"]
    statuses = {int(k): v for k, v in doc.get("statusCodeDistribution", {}).items()}
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    errors = doc.get("errorDistribution", {})
    # In-flight requests cut off by the end of the run are not failures.
    real_errors = sum(v for k, v in errors.items() if "deadline" not in k)
    lat = {k: v for k, v in doc.get("latencyPercentiles", {}).items() if v is not None}
    return {
        "tool": "oha",
        "requests": sum(statuses.values()),
        "ok": ok,
        "duration_s": summary["total"],
        "rps": summary["requestsPerSec"],
        "latency_s": lat,
        "non_2xx": sum(statuses.values()) - ok,
        "error_kinds": errors,
        "errors": real_errors + sum(statuses.values()) - ok,
    }


def _pinned(cpus):
    """`taskset -c CPUS` in front of a load generator, or nothing (unpinned)."""
    return ["taskset", "-c", cpus] if cpus else []


def wrk(url, *, seconds, connections, cpus, headers, script=None, timeout_s=10):
    argv = [*_pinned(cpus), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += [f"--timeout={timeout_s}s"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    res = parse_wrk(out)
    res["argv"] = argv
    return res


def oha(url, *, seconds, connections, cpus, headers, rate, oha_bin):
    argv = [*_pinned(cpus), oha_bin, "--no-tui", "--output-format", "json", "--worker-threads", "1"]
    argv += ["-z", f"{seconds}s", "-c", str(connections), "-q", str(rate), "--latency-correction"]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    res = parse_oha(out)
    res["argv"] = argv
    res["target_rate"] = rate
    return res
