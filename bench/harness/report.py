"""From raw runs to the summary, the targets, and the Markdown report.

Every figure is a median over the repetitions with its spread (min..max).
Added latency is paired: in each repetition the proxy's percentile minus
the direct run's percentile of the same repetition, then the median of
those differences. Pure functions of the run list: selftest.py feeds them
canned runs.
"""

import json
import os
import statistics

import chart

TARGETS = ("direct", "sidecar", "envoy")
PROXIES = ("sidecar", "envoy")
PERCENTILES = ("p50", "p90", "p99", "p99.9", "p99.99")

# The targets.
THROUGHPUT_VS_ENVOY = 3.0
ADDED_P99_US = 250.0
RSS_UNDER_LOAD_BYTES = 20_000_000
MICRO_NS = 2000.0


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _runs(runs, scenario, target):
    return [r for r in runs if r["scenario"] == scenario and r["target"] == target]


def summarize(runs, scenarios):
    out = {}
    for sc in scenarios:
        per = {}
        for t in TARGETS:
            rs = _runs(runs, sc, t)
            if not rs:
                continue
            keys = sorted({k for r in rs for k in r["load"]["latency_s"]})
            per[t] = {
                "rps": spread([r["load"]["rps"] for r in rs]),
                "requests": spread([r["load"]["requests"] for r in rs]),
                "errors": sum(r["load"]["errors"] for r in rs),
                "proxy_cpu_us_per_req": spread([r.get("proxy_cpu_us_per_req") for r in rs]),
                "proxy_cpu_util": spread([r.get("proxy_cpu_util") for r in rs]),
                "upstream_cpu_us_per_req": spread([r.get("upstream_cpu_us_per_req") for r in rs]),
                "latency_us": {k: spread([r["load"]["latency_s"].get(k, 0) * 1e6 for r in rs]) for k in keys},
                "proxy_peak_rss_kib": max((r.get("proxy_peak_rss_kib") or 0 for r in rs), default=0) or None,
                "foreign_cpu_cores": spread([r.get("foreign_cpu_cores") for r in rs]),
                "access_log_lines_per_req": spread([r.get("access_log_lines_per_req") for r in rs]),
            }
            if sc == "fixed_rate":
                per[t]["sustained"] = all(r["load"]["rps"] >= 0.97 * r["load"]["target_rate"] for r in rs)
        out[sc] = per
    return out


def added_latency(runs):
    """{proxy: {percentile: spread of (proxy - direct) in µs}} at the fixed rate."""
    direct = {r["rep"]: r for r in _runs(runs, "fixed_rate", "direct")}
    out = {}
    for p in PROXIES:
        per = {}
        for k in PERCENTILES:
            diffs = []
            for r in _runs(runs, "fixed_rate", p):
                d = direct.get(r["rep"])
                if d and k in r["load"]["latency_s"] and k in d["load"]["latency_s"]:
                    diffs.append((r["load"]["latency_s"][k] - d["load"]["latency_s"][k]) * 1e6)
            if diffs:
                per[k] = spread(diffs)
        if per:
            out[p] = per
    return out


def ratios(summary):
    """sidecar/direct and sidecar/envoy of median throughput, and envoy's CPU
    per request over the sidecar's, per scenario."""
    out = {}
    for sc, per in summary.items():
        r = {}
        s = per.get("sidecar")
        if s and per.get("direct"):
            r["sidecar_over_direct_rps"] = s["rps"]["median"] / per["direct"]["rps"]["median"]
        if s and per.get("envoy"):
            r["sidecar_over_envoy_rps"] = s["rps"]["median"] / per["envoy"]["rps"]["median"]
            sc_cpu, en_cpu = s["proxy_cpu_us_per_req"], per["envoy"]["proxy_cpu_us_per_req"]
            if sc_cpu and en_cpu and sc_cpu["median"] > 0:
                r["envoy_over_sidecar_cpu_per_req"] = en_cpu["median"] / sc_cpu["median"]
        out[sc] = r
    return out


def targets(summary, added, memory, micro):
    out = []
    ka = summary.get("closed_keepalive", {})
    if ka.get("sidecar") and ka.get("envoy"):
        v = ka["sidecar"]["rps"]["median"] / ka["envoy"]["rps"]["median"]
        out.append(_target("throughput vs Envoy (closed loop, keep-alive)", v, f"≥ {THROUGHPUT_VS_ENVOY:g}×",
                           v >= THROUGHPUT_VS_ENVOY, f"{v:.2f}×"))
    if added.get("sidecar", {}).get("p99"):
        v = added["sidecar"]["p99"]["median"]
        out.append(_target("added p99 latency at the fixed rate", v, f"≤ {ADDED_P99_US:g} µs",
                           v <= ADDED_P99_US, f"{v:.0f} µs"))
    m = memory.get("sidecar", {})
    if m.get("load_peak_kib"):
        v = m["load_peak_kib"] * 1024
        out.append(_target("sidecar RSS under load", v, "≤ 20 MB", v <= RSS_UNDER_LOAD_BYTES, f"{v / 1e6:.1f} MB"))
    stack = [b for b in micro.get("benchmarks", []) if b["id"].startswith("stack/")]
    if stack:
        worst = max(stack, key=lambda b: b["median_ns"])
        v = worst["median_ns"]
        out.append(_target(f"per-request sidecar work (micro, worst: {worst['id']})", v, "≤ 2 µs",
                           v <= MICRO_NS, f"{v / 1000:.2f} µs"))
    return out


def _target(name, value, threshold, met, shown):
    return {"name": name, "value": value, "shown": shown, "threshold": threshold, "met": bool(met)}


# ---------------------------------------------------------------- Markdown


def _fmt(s, scale=1.0, digits=0, unit=""):
    if not s:
        return "–"
    f = f"{{:,.{digits}f}}"
    med = f.format(s["median"] * scale)
    if s["n"] > 1:
        return f"{med}{unit} ({f.format(s['min'] * scale)}–{f.format(s['max'] * scale)})"
    return med + unit


def markdown(doc):
    s = doc["settings"]
    lines = [
        "# paymesh benchmark: sidecar vs Envoy vs no proxy",
        "",
        f"Generated {doc['generated_at']} by `{doc['command']}` at {doc['versions']['git']}.",
        f"Machine: {doc['machine']['cpu_model']}, {doc['machine']['cpus']} CPUs, kernel {doc['machine']['kernel']}; "
        f"load average at start {doc['load_average_start']}, at end {doc['load_average_end']}.",
        f"Tools: {doc['versions']['envoy']}; {doc['versions']['wrk']}; {doc['versions']['oha']}.",
        "",
        f"{s['reps']} repetitions, interleaved (each repetition runs every scenario against direct, sidecar and "
        f"Envoy in turn, the starting target rotating). Closed-loop runs {s['closed_s']} s with wrk "
        f"({s['connections']} connections), fixed-rate runs {s['fixed_s']} s with oha at {doc['fixed_rate']:,} req/s "
        f"({s['rate_basis']}). Pinning: proxy on CPU {s['proxy_cpus']}, upstream on CPU {s['upstream_cpus']}, "
        f"load generator on CPU {s['load_cpus']}; both proxies run {s['workers']} worker thread(s). "
        + (f"Before each run the harness waits up to {s['quiet_wait_s']} s for other processes to calm down, and "
           f"runs again (up to {s['retries']} time(s)) a run that they disturbed. " if s.get("quiet_wait_s") else "")
        + "Figures are medians with (min–max) over the repetitions."
        + (" **SMOKE RUN: tiny load, not a measurement.**" if s.get("smoke") else ""),
        "",
    ]
    if doc.get("busy_warning"):
        lines += [f"> **Machine busy:** {doc['busy_warning']}", ""]
    lines += ["## Targets", "", "| target | measured | threshold | |", "| --- | --- | --- | --- |"]
    for t in doc["targets"]:
        lines.append(f"| {t['name']} | {t['shown']} | {t['threshold']} | {'met' if t['met'] else '**missed**'} |")
    lines += ["", "## Throughput and CPU", ""]
    lines += [
        "| scenario | target | req/s | CPU µs/req (proxy) | proxy CPU use | CPU µs/req (upstream) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for sc, per in doc["summary"].items():
        for t, v in per.items():
            lines.append(
                f"| {doc['scenarios'][sc]} | {t} | {_fmt(v['rps'])} | {_fmt(v['proxy_cpu_us_per_req'], digits=1)} | "
                f"{_fmt(v['proxy_cpu_util'], scale=100, unit=' %')} | {_fmt(v['upstream_cpu_us_per_req'], digits=1)} | "
                f"{v['errors']} |"
            )
    lines += ["", "| scenario | sidecar / direct | sidecar / Envoy | Envoy CPU per req / sidecar's |",
              "| --- | --- | --- | --- |"]
    for sc, r in doc["ratios"].items():
        def g(k):
            return f"{r[k]:.2f}×" if k in r else "–"
        lines.append(f"| {doc['scenarios'][sc]} | {g('sidecar_over_direct_rps')} | {g('sidecar_over_envoy_rps')} | "
                     f"{g('envoy_over_sidecar_cpu_per_req')} |")
    fixed = doc["summary"].get("fixed_rate", {})
    if fixed:
        lines += ["", f"## Latency at a fixed {doc['fixed_rate']:,} req/s (open loop, latency-corrected)", "",
                  "| target | " + " | ".join(PERCENTILES) + " | sustained |",
                  "| --- |" + " --- |" * (len(PERCENTILES) + 1)]
        for t, v in fixed.items():
            cells = [_fmt(v["latency_us"].get(k), unit=" µs") for k in PERCENTILES]
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {'yes' if v.get('sustained') else '**no**'} |")
        lines += ["", "Added latency over direct (paired per repetition):", "",
                  "| proxy | " + " | ".join(PERCENTILES) + " |", "| --- |" + " --- |" * len(PERCENTILES)]
        for p, per in doc["added_latency_us"].items():
            lines.append(f"| {p} | " + " | ".join(_fmt(per.get(k), unit=" µs") for k in PERCENTILES) + " |")
        lines += ["", "![latency percentiles](latency.svg)"]
    lines += ["", "## Memory (RSS)", "", "| process | idle | peak under load | VmHWM at end |", "| --- | --- | --- | --- |"]
    for t, m in doc["memory"].items():
        def mb(k):
            return f"{m[k] / 1024:.1f} MiB" if m.get(k) else "–"
        lines.append(f"| {t} | {mb('idle_kib')} | {mb('load_peak_kib')} | {mb('hwm_kib')} |")
    micro = doc.get("micro", {})
    if micro.get("benchmarks"):
        lines += ["", "## Micro-benchmarks (criterion, per call)", "", "| benchmark | median | mean |",
                  "| --- | --- | --- |"]
        for b in micro["benchmarks"]:
            lines.append(f"| {b['id']} | {b['median_ns']:,.0f} ns | {b['mean_ns']:,.0f} ns |")
    elif micro.get("skipped"):
        lines += ["", f"Micro-benchmarks: {micro['skipped']}"]
    lines += ["", "## What each proxy does", "", doc["fairness"], ""]
    if doc.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    return "\n".join(lines)


def write(out_dir, doc):
    """report.json, report.md and latency.svg into `out_dir`; returns the
    Markdown."""
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md)
    fixed = doc["summary"].get("fixed_rate", {})
    series = {t: [(k, (v["latency_us"].get(k) or {}).get("median")) for k in PERCENTILES] for t, v in fixed.items()}
    svg = chart.latency_svg(
        series,
        title=f"Latency at a fixed {doc['fixed_rate']:,} req/s (open loop, corrected)",
        subtitle=f"median of {doc['settings']['reps']} repetition(s); {doc['machine']['cpu_model']}",
    )
    with open(os.path.join(out_dir, "latency.svg"), "w") as f:
        f.write(svg)
    return md
