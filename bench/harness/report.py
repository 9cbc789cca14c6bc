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

TARGETS = ("direct", "sidecar", "haproxy", "envoy")
PROXIES = ("sidecar", "haproxy", "envoy")
PERCENTILES = ("p50", "p90", "p99", "p99.9", "p99.99")

# The issues' targets.
THROUGHPUT_VS_ENVOY = 3.0
ADDED_P99_US = 250.0
RSS_UNDER_LOAD_BYTES = 20_000_000
MICRO_NS = 2000.0
CPU_VS_HAPROXY = 1.0  # sidecar CPU per request / haproxy's, at most
CPU_VS_ENVOY = 2.0  # Envoy's CPU per request / the sidecar's, at least
IDLE_CONN_BYTES = 8_000  # RSS per idle keep-alive connection, at most (8 KB)
SCALE_GROWTH = 1.10  # a per-request cost may grow by at most 10 % with scale
# The scale runs' kinds, in the report's order, and what each row varies.
SCALE_KINDS = {"clients": "configured clients", "connections": "concurrent connections",
               "connections_haproxy": "concurrent connections, haproxy"}


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
    """Per scenario: sidecar/direct and sidecar/envoy of median throughput;
    the sidecar's CPU per request over haproxy's and Envoy's, and Envoy's
    over the sidecar's."""
    out = {}
    for sc, per in summary.items():
        r = {}
        s = per.get("sidecar")
        if s and per.get("direct"):
            r["sidecar_over_direct_rps"] = s["rps"]["median"] / per["direct"]["rps"]["median"]
        if s and per.get("envoy"):
            r["sidecar_over_envoy_rps"] = s["rps"]["median"] / per["envoy"]["rps"]["median"]
        sc_cpu = (s or {}).get("proxy_cpu_us_per_req")
        for other in ("haproxy", "envoy"):
            o_cpu = (per.get(other) or {}).get("proxy_cpu_us_per_req")
            if sc_cpu and o_cpu and sc_cpu["median"] > 0 and o_cpu["median"] > 0:
                r[f"sidecar_over_{other}_cpu_per_req"] = sc_cpu["median"] / o_cpu["median"]
                if other == "envoy":
                    r["envoy_over_sidecar_cpu_per_req"] = o_cpu["median"] / sc_cpu["median"]
        out[sc] = r
    return out


def headline(summary, added, memory):
    """The report's first table, per proxy: CPU per request (closed loop,
    keep-alive GET, and at the fixed rate), throughput, added p50/p99 at the
    fixed rate and peak RSS under load; with the sidecar's CPU per request
    over haproxy's and Envoy's."""
    ka, fixed = summary.get("closed_keepalive", {}), summary.get("fixed_rate", {})
    rows = {}
    for p in PROXIES:
        if p not in ka and p not in fixed:
            continue
        rows[p] = {
            "cpu_us_per_req": (ka.get(p) or {}).get("proxy_cpu_us_per_req"),
            "cpu_fixed_us_per_req": (fixed.get(p) or {}).get("proxy_cpu_us_per_req"),
            "rps": (ka.get(p) or {}).get("rps"),
            "added_p50_us": added.get(p, {}).get("p50"),
            "added_p99_us": added.get(p, {}).get("p99"),
            "rss_peak_kib": (memory.get(p) or {}).get("load_peak_kib"),
        }
    out = {"rows": rows}
    sc = (rows.get("sidecar") or {}).get("cpu_us_per_req")
    for other in ("haproxy", "envoy"):
        o = (rows.get(other) or {}).get("cpu_us_per_req")
        if sc and o and o["median"] > 0:
            out[f"sidecar_over_{other}"] = sc["median"] / o["median"]
    return out


def idle_summary(results):
    """{proxy: [{n, held, failed, rss_before_kib, rss_with_kib, bytes_per_conn}]}
    from the idle-connection measurements: (RSS with − RSS before) / held."""
    out = {}
    for r in results:
        row = dict(r)
        held = r.get("held") or 0
        if held and r.get("rss_with_kib") is not None and r.get("rss_before_kib") is not None:
            row["bytes_per_conn"] = (r["rss_with_kib"] - r["rss_before_kib"]) * 1024 / held
        else:
            row["bytes_per_conn"] = None
        out.setdefault(r["target"], []).append(row)
    for rows in out.values():
        rows.sort(key=lambda x: x["n"])
    return out


def scale_summary(runs):
    """{kind: {few, many, few_cpu, many_cpu, few_rps, many_rps, ratio, grows}}
    for the scale runs (kind `clients`: configured clients; `connections`:
    concurrent connections; `connections_haproxy`: haproxy's runs through
    the same counts), `ratio` = many's median CPU per request over few's,
    `grows` when that is more than SCALE_GROWTH."""
    out = {}
    for kind in SCALE_KINDS:
        rs = [r for r in runs if r["kind"] == kind]
        variants = sorted({r["variant"] for r in rs})
        if len(variants) < 2:
            continue
        few, many = variants[0], variants[-1]

        def pick(v, key):
            return spread([r.get(key) for r in rs if r["variant"] == v])

        row = {"few": few, "many": many, "few_cpu": pick(few, "cpu_us_per_req"),
               "many_cpu": pick(many, "cpu_us_per_req"), "few_rps": pick(few, "rps"), "many_rps": pick(many, "rps"),
               "errors": sum(r.get("errors", 0) for r in rs)}
        if row["few_cpu"] and row["many_cpu"] and row["few_cpu"]["median"] > 0:
            row["ratio"] = row["many_cpu"]["median"] / row["few_cpu"]["median"]
            row["grows"] = row["ratio"] > SCALE_GROWTH
        out[kind] = row
    return out


def _margin(value, limit, *, at_most, fmt):
    """How far `value` is from `limit`, in its unit and in %: "met by …" /
    "missed by …"."""
    diff = limit - value if at_most else value - limit
    pct = abs(diff) / limit * 100 if limit else 0.0
    return f"{'met' if diff >= 0 else 'missed'} by {fmt(abs(diff))} ({pct:.0f} %)"


def targets(layouts, idle=None, scale=None, micro=None):
    """Every target of the issues, met or missed and by how much. `layouts`
    is {layout: {summary, added_latency_us, memory, headline}}; the
    throughput target is checked in the first (pinned) layout only."""
    out = []
    idle, scale, micro = idle or {}, scale or {}, micro or {}
    first = True
    for name, lay in layouts.items():
        rows = lay["headline"]["rows"]
        sc = (rows.get("sidecar") or {}).get("cpu_us_per_req")
        hx = (rows.get("haproxy") or {}).get("cpu_us_per_req")
        en = (rows.get("envoy") or {}).get("cpu_us_per_req")
        if sc and hx:
            v = sc["median"] / hx["median"]
            out.append(_target(f"sidecar CPU per request vs haproxy's ({name})", v, "≤ 1.00× haproxy's",
                               v <= CPU_VS_HAPROXY, f"{v:.2f}× ({sc['median']:.1f} vs {hx['median']:.1f} µs)",
                               _margin(v, CPU_VS_HAPROXY, at_most=True, fmt=lambda d: f"{d:.2f}×")))
        if sc and en:
            v = en["median"] / sc["median"]
            out.append(_target(f"Envoy's CPU per request over the sidecar's ({name})", v, f"≥ {CPU_VS_ENVOY:g}×",
                               v >= CPU_VS_ENVOY, f"{v:.2f}× ({en['median']:.1f} vs {sc['median']:.1f} µs)",
                               _margin(v, CPU_VS_ENVOY, at_most=False, fmt=lambda d: f"{d:.2f}×")))
        ka = lay["summary"].get("closed_keepalive", {})
        if first and ka.get("sidecar") and ka.get("envoy"):
            v = ka["sidecar"]["rps"]["median"] / ka["envoy"]["rps"]["median"]
            out.append(_target(f"throughput vs Envoy (closed loop, keep-alive; {name})", v,
                               f"≥ {THROUGHPUT_VS_ENVOY:g}×", v >= THROUGHPUT_VS_ENVOY, f"{v:.2f}×",
                               _margin(v, THROUGHPUT_VS_ENVOY, at_most=False, fmt=lambda d: f"{d:.2f}×")))
        p99 = lay["added_latency_us"].get("sidecar", {}).get("p99")
        if p99:
            v = p99["median"]
            rate = lay.get("fixed_rate")
            at = f" of {rate:,} req/s" if rate else ""
            out.append(_target(f"added p99 at the fixed rate{at} ({name})", v, f"≤ {ADDED_P99_US:g} µs",
                               v <= ADDED_P99_US, f"{v:.0f} µs",
                               _margin(v, ADDED_P99_US, at_most=True, fmt=lambda d: f"{d:.0f} µs")))
        first = False
    peaks = [(lay["memory"].get("sidecar") or {}).get("load_peak_kib") or 0 for lay in layouts.values()]
    if any(peaks):
        v = max(peaks) * 1024
        out.append(_target("sidecar RSS under load (highest of every layout)", v, "≤ 20 MB",
                           v <= RSS_UNDER_LOAD_BYTES, f"{v / 1e6:.1f} MB",
                           _margin(v, RSS_UNDER_LOAD_BYTES, at_most=True, fmt=lambda d: f"{d / 1e6:.1f} MB")))
    rows = [r for r in idle.get("sidecar", []) if r.get("bytes_per_conn") is not None]
    if rows:
        r = rows[-1]
        v = r["bytes_per_conn"]
        out.append(_target(f"sidecar RSS per idle keep-alive connection ({r['held']:,} held)", v, "≤ 8 KB",
                           v <= IDLE_CONN_BYTES, f"{v / 1000:.1f} KB",
                           _margin(v, IDLE_CONN_BYTES, at_most=True, fmt=lambda d: f"{d / 1000:.1f} KB")))
    for kind, what in (("clients", "configured clients"), ("connections", "concurrent connections")):
        row = scale.get(kind)
        if row and "ratio" in row:
            v = row["ratio"]
            growth, limit = (v - 1) * 100, (SCALE_GROWTH - 1) * 100
            by = f"{'met' if not row['grows'] else 'missed'} by {abs(limit - growth):.0f} points (grew {growth:+.0f} %)"
            shown = f"{v:.2f}×"
            hx = scale.get("connections_haproxy") if kind == "connections" else None
            if hx and "ratio" in hx and (hx["few"], hx["many"]) == (row["few"], row["many"]):
                shown += f" (haproxy {hx['ratio']:.2f}× in the same run)"
            out.append(_target(f"sidecar CPU per request, {row['many']:,} vs {row['few']:,} {what}", v,
                               f"grows ≤ {limit:.0f} %", not row["grows"], shown, by))
    stack = [b for b in micro.get("benchmarks", []) if b["id"].startswith("stack/")]
    if stack:
        worst = max(stack, key=lambda b: b["median_ns"])
        v = worst["median_ns"]
        out.append(_target(f"per-request sidecar work (micro, worst: {worst['id']})", v, "≤ 2 µs",
                           v <= MICRO_NS, f"{v / 1000:.2f} µs",
                           _margin(v, MICRO_NS, at_most=True, fmt=lambda d: f"{d / 1000:.2f} µs")))
    return out


def _target(name, value, threshold, met, shown, by=""):
    return {"name": name, "value": value, "shown": shown, "threshold": threshold, "met": bool(met), "by": by}


# ---------------------------------------------------------------- Markdown


def _fmt(s, scale=1.0, digits=0, unit=""):
    if not s:
        return "–"
    f = f"{{:,.{digits}f}}"
    med = f.format(s["median"] * scale)
    if s["n"] > 1:
        return f"{med}{unit} ({f.format(s['min'] * scale)}–{f.format(s['max'] * scale)})"
    return med + unit


def _pin_text(pin):
    if not pin or not pin.get("proxy"):
        return "no pinning (every process may run on every CPU)"
    return f"proxy on CPU {pin['proxy']}, upstream on CPU {pin['upstream']}, load generator on CPU {pin['load']}"


def _headline_md(name, lay):
    h = lay["headline"]
    lines = [f"### {name}: {lay.get('description', '')}", "",
             f"{_pin_text(lay.get('pinning'))}; fixed rate {lay.get('fixed_rate') or 0:,} req/s "
             f"({lay.get('rate_basis', '?')}).", "",
             "| proxy | CPU µs/req, closed loop keep-alive GET | CPU µs/req at the fixed rate | req/s, closed loop | "
             "added p50 / p99 at the fixed rate | RSS peak under load |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p, r in h["rows"].items():
        p50 = _fmt(r["added_p50_us"], unit=" µs")
        p99 = _fmt(r["added_p99_us"], unit=" µs")
        rss = f"{r['rss_peak_kib'] / 1024:.1f} MiB" if r.get("rss_peak_kib") else "–"
        lines.append(f"| {p} | **{_fmt(r['cpu_us_per_req'], digits=1)}** | {_fmt(r['cpu_fixed_us_per_req'], digits=1)} "
                     f"| {_fmt(r['rps'])} | {p50} / {p99} | {rss} |")
    said = [f"{h[k]:.2f}× haproxy's" if k.endswith("haproxy") else f"{h[k]:.2f}× Envoy's"
            for k in ("sidecar_over_haproxy", "sidecar_over_envoy") if k in h]
    if said:
        lines += ["", "Sidecar CPU per request: " + "; ".join(said) + "."]
    return lines


def _details_md(name, lay, scenarios):
    lines = ["", f"## {name}: throughput and CPU", "",
             "| scenario | target | req/s | CPU µs/req (proxy) | proxy CPU use | CPU µs/req (upstream) | errors |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for sc, per in lay["summary"].items():
        for t, v in per.items():
            lines.append(
                f"| {scenarios[sc]} | {t} | {_fmt(v['rps'])} | {_fmt(v['proxy_cpu_us_per_req'], digits=1)} | "
                f"{_fmt(v['proxy_cpu_util'], scale=100, unit=' %')} | {_fmt(v['upstream_cpu_us_per_req'], digits=1)} | "
                f"{v['errors']} |"
            )
    lines += ["", "| scenario | sidecar / direct req/s | sidecar / Envoy req/s | sidecar / haproxy CPU per req | "
              "sidecar / Envoy CPU per req |", "| --- | --- | --- | --- | --- |"]
    for sc, r in lay["ratios"].items():
        def g(k):
            return f"{r[k]:.2f}×" if k in r else "–"
        lines.append(f"| {scenarios[sc]} | {g('sidecar_over_direct_rps')} | {g('sidecar_over_envoy_rps')} | "
                     f"{g('sidecar_over_haproxy_cpu_per_req')} | {g('sidecar_over_envoy_cpu_per_req')} |")
    fixed = lay["summary"].get("fixed_rate", {})
    if fixed:
        lines += ["", f"### {name}: latency at a fixed {lay['fixed_rate']:,} req/s (open loop, latency-corrected)", "",
                  "| target | " + " | ".join(PERCENTILES) + " | sustained |",
                  "| --- |" + " --- |" * (len(PERCENTILES) + 1)]
        for t, v in fixed.items():
            cells = [_fmt(v["latency_us"].get(k), unit=" µs") for k in PERCENTILES]
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {'yes' if v.get('sustained') else '**no**'} |")
        lines += ["", "Added latency over direct (paired per repetition):", "",
                  "| proxy | " + " | ".join(PERCENTILES) + " |", "| --- |" + " --- |" * len(PERCENTILES)]
        for p, per in lay["added_latency_us"].items():
            lines.append(f"| {p} | " + " | ".join(_fmt(per.get(k), unit=" µs") for k in PERCENTILES) + " |")
    lines += ["", f"### {name}: memory (RSS)", "", "| process | idle | peak under load | VmHWM at end |",
              "| --- | --- | --- | --- |"]
    for t, m in lay["memory"].items():
        def mb(k):
            return f"{m[k] / 1024:.1f} MiB" if m.get(k) else "–"
        lines.append(f"| {t} | {mb('idle_kib')} | {mb('load_peak_kib')} | {mb('hwm_kib')} |")
    return lines


def markdown(doc):
    s = doc["settings"]
    v = doc["versions"]
    lines = [
        "# paymesh benchmark: sidecar vs haproxy vs Envoy vs no proxy",
        "",
        f"Generated {doc['generated_at']} by `{doc['command']}` at {v['git']}.",
        f"Machine: {doc['machine']['cpu_model']}, {doc['machine']['cpus']} CPUs, kernel {doc['machine']['kernel']}; "
        f"load average at start {doc['load_average_start']}, at end {doc['load_average_end']}.",
        f"Tools: {v.get('envoy', '-')}; {v.get('haproxy', '-')}; {v.get('wrk', '-')}; {v.get('oha', '-')}.",
        "",
        f"{s['reps']} repetitions per layout, interleaved (each repetition runs every scenario against every target "
        f"in turn, the starting target rotating). Closed-loop runs {s['closed_s']} s with wrk "
        f"({s['connections']} connections), fixed-rate runs {s['fixed_s']} s with oha. Every proxy runs "
        f"{s['workers']} worker thread(s) and reaches the upstream over "
        f"{'a Unix socket' if s.get('transport') == 'unix' else 'loopback TCP'} (direct runs: TCP). "
        + (f"Before each run the harness waits up to {s['quiet_wait_s']} s for other processes to calm down, and "
           f"runs again (up to {s['retries']} time(s)) a run that they disturbed. " if s.get("quiet_wait_s") else "")
        + "Figures are medians with (min–max) over the repetitions. CPU per request is `utime + stime` of the "
        "whole proxy process over the run divided by the requests completed."
        + (" **SMOKE RUN: tiny load, not a measurement.**" if s.get("smoke") else ""),
        "",
    ]
    if doc.get("busy_warning"):
        lines += [f"> **Machine busy:** {doc['busy_warning']}", ""]
    lines += ["## Headline: proxy CPU per request", ""]
    for name, lay in doc["layouts"].items():
        lines += _headline_md(name, lay) + [""]
    lines += ["## Targets", "", "| target | measured | threshold | | by how much |", "| --- | --- | --- | --- | --- |"]
    for t in doc["targets"]:
        lines.append(f"| {t['name']} | {t['shown']} | {t['threshold']} | {'met' if t['met'] else '**missed**'} | "
                     f"{t.get('by', '')} |")
    idle = doc.get("idle_summary") or {}
    if idle:
        lines += ["", "## Idle keep-alive connections", "",
                  "Each connection made one request (answered 200) and then stayed open and idle; "
                  "per connection = (RSS with them − RSS just before) / connections held; KB = 1,000 bytes.", "",
                  "| proxy | connections asked | held | failed | RSS before | RSS with them | per connection |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for p, rows in idle.items():
            for r in rows:
                per = f"{r['bytes_per_conn'] / 1000:.1f} KB" if r.get("bytes_per_conn") is not None else "–"
                lines.append(f"| {p} | {r['n']:,} | {r.get('held', 0):,} | {r.get('failed', 0):,} | "
                             f"{(r.get('rss_before_kib') or 0) / 1024:.1f} MiB | "
                             f"{(r.get('rss_with_kib') or 0) / 1024:.1f} MiB | {per} |")
        for note in doc.get("idle_notes", []):
            lines += ["", note]
    scale = doc.get("scale") or {}
    if scale:
        lines += ["", "## Scale: the sidecar's CPU per request", "",
                  "Closed loop, keep-alive GET, pinned; a row is flagged when the cost grows by more than 10 %. "
                  "haproxy runs through the same connection counts: what many connections cost any proxy here.", "",
                  "| with | few | many | CPU µs/req, few | CPU µs/req, many | req/s, few | req/s, many | many / few | "
                  "errors (wrk) | |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for kind, what in SCALE_KINDS.items():
            r = scale.get(kind)
            if not r:
                continue
            ratio = f"{r['ratio']:.2f}×" if "ratio" in r else "–"
            flag = "**grows**" if r.get("grows") else ("flat" if "ratio" in r else "–")
            lines.append(f"| {what} | {r['few']:,} | {r['many']:,} | {_fmt(r['few_cpu'], digits=1)} | "
                         f"{_fmt(r['many_cpu'], digits=1)} | {_fmt(r['few_rps'])} | {_fmt(r['many_rps'])} | {ratio} | "
                         f"{r.get('errors', 0):,} | {flag} |")
        for note in doc.get("scale_notes", []):
            lines += ["", note]
    for name, lay in doc["layouts"].items():
        lines += _details_md(name, lay, doc["scenarios"])
    if doc["layouts"]:
        lines += ["", "![latency percentiles](latency.svg)"]
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
    # The chart shows the first layout (pinned, when it ran).
    name, lay = next(iter(doc["layouts"].items()), ("-", {"summary": {}, "fixed_rate": 0}))
    fixed = lay["summary"].get("fixed_rate", {})
    series = {t: [(k, (v["latency_us"].get(k) or {}).get("median")) for k in PERCENTILES] for t, v in fixed.items()}
    svg = chart.latency_svg(
        series,
        title=f"Latency at a fixed {lay.get('fixed_rate') or 0:,} req/s (open loop, corrected; {name})",
        subtitle=f"median of {doc['settings']['reps']} repetition(s); {doc['machine']['cpu_model']}",
    )
    with open(os.path.join(out_dir, "latency.svg"), "w") as f:
        f.write(svg)
    return md
