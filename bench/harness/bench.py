#!/usr/bin/env python3
"""`make bench`: paymesh-sidecar against haproxy, Envoy and no proxy, in one
run, with a report (target/bench/report.md, report.json) and a chart
(target/bench/latency.svg).

Four ways to reach one static upstream, kept running side by side for each
layout: direct (the baseline), through the sidecar, through haproxy,
through Envoy. Each layout (pinned: the proxy alone on a core; unpinned:
everything shares every core) starts them afresh.
Every repetition runs every scenario against the four in turn (the first
target rotating between repetitions, so a slow drift of the machine does not
always hit the same one). Each run records the load generator's numbers,
the CPU time of every process (for CPU µs per request), the peak RSS of the
proxy under test, and how much CPU the rest of the machine used meanwhile,
so a run disturbed by someone else's compile can be told apart.

After the runs of the first layout come the scale runs (the sidecar's CPU
per request with 1 vs 10,000 configured clients, and with few vs many
concurrent connections) and the idle-connection measurement (RSS per held
keep-alive connection of each proxy), last because they leave the proxies'
heaps grown.

Environment (or flags, see --help): BENCH_SMOKE=1 for a tiny load,
BENCH_REPS, BENCH_SECONDS, BENCH_RATE, BENCH_LAYOUTS, BENCH_IDLE,
BENCH_SCALE=0, BENCH_MICRO=0 to skip criterion.
This harness is Python standard library only.
"""

import datetime
import os
import resource
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import configs  # noqa: E402
import idle  # noqa: E402
import load  # noqa: E402
import micro  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import tools  # noqa: E402
from settings import GET_PATH, LAYOUTS, POST_PATH, PROXIES, ROOT, SCENARIOS, parse_args, pinning  # noqa: E402
from tools import log  # noqa: E402

# Other processes' CPU use (in cores) under which the machine counts as
# quiet before a run, and over which a finished run counts as disturbed.
QUIET_CORES = 0.15
DISTURBED_CORES = 0.25
# How long held connections sit before the idle RSS is read.
IDLE_SETTLE_S = 2.5


class Bench:
    def __init__(self, args):
        self.a = args
        self.layout = args.layouts[0]
        self.pin = pinning(self.layout)
        self.out = args.out
        self.work = os.path.join(self.out, "work")
        self.logs = os.path.join(self.out, "logs")
        for d in (self.out, self.work, self.logs):
            os.makedirs(d, exist_ok=True)
        self.services = {}
        self.urls = {}
        self.access_logs = {}
        self.runs = []
        self.memory = {}  # {layout: {target: {...}}}
        self.layout_info = {}  # {layout: {fixed_rate, rate_basis, calibration_rps, pinning}}
        self.scale_runs = []
        self.idle_results = []
        self.idle_notes = []
        self.scale_notes = []
        self.notes = []
        # Every process started from here inherits the raised limit; the
        # proxies' connection caps are the sidecar's budget of it.
        self.fd_limit = procs.raise_fd_limit()
        self.max_connections = configs.fd_budget(self.fd_limit)

    # ------------------------------------------------------------ set-up

    def prepare(self):
        a = self.a
        self.sidecar_bin, self.upstream_bin = tools.build(ROOT, a.jobs)
        if a.micro:
            tools.run(["cargo", "bench", f"-j{a.jobs}", "-p", "paymesh-bench", "--bench", "per_request", "--no-run"],
                      cwd=ROOT)
        self.envoy_bin = tools.envoy(ROOT) if "envoy" in a.targets else None
        self.haproxy_bin = tools.haproxy() if "haproxy" in a.targets else None
        tools.wrk()
        self.oha_bin = tools.oha(ROOT, a.jobs) if "fixed_rate" in a.scenarios else None
        self.versions = {
            "git": tools.git_rev(ROOT),
            "envoy": tools.envoy_version(self.envoy_bin) if self.envoy_bin else "-",
            "haproxy": tools.haproxy_version(self.haproxy_bin) if self.haproxy_bin else "-",
            "wrk": tools.version(["wrk", "-v"]).split(" [")[0],
            "oha": tools.version([self.oha_bin, "--version"]) if self.oha_bin else "-",
        }

    def start_proxy(self, name, port, cfg, text, argv, *, ready, metrics, env=None):
        """Writes the proxy's config `text` to `cfg` and starts it (`argv`) on
        the proxy CPUs; once `ready` answers it serves on `port` and exports
        its metrics at `metrics`."""
        with open(cfg, "w") as f:
            f.write(text)
        svc = procs.Service(name, argv, cpus=self.pin["proxy"], log_dir=self.logs, env=env)
        svc.wait_ready(ready)
        svc.metrics_url = metrics
        self.services[name] = svc
        self.urls[name] = f"http://127.0.0.1:{port}"
        self.ports[name] = port

    def start(self, layout):
        """Starts the upstream and the proxies for `layout` (pinned or not);
        in the first layout, with --scale, also a second sidecar whose client
        table holds --scale-clients entries."""
        a = self.a
        self.layout, self.pin = layout, pinning(layout)
        pin = self.pin
        # Children inherit the harness's affinity: unpinned ones must not
        # inherit the last layout's pinning of the harness.
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except OSError:
            pass
        self.services, self.urls, self.access_logs, self.ports = {}, {}, {}, {}
        up_port = procs.free_port()
        argv = [self.upstream_bin, "--listen", f"127.0.0.1:{up_port}", "--body-bytes", str(a.body_bytes)]
        # --transport unix: the proxies reach the upstream over this socket;
        # its TCP port stays for readiness and the direct runs.
        self.up_socket = os.path.join(self.work, "upstream.sock") if a.transport == "unix" else None
        if self.up_socket:
            argv += ["--listen-unix", self.up_socket]
        self.services["upstream"] = procs.Service("upstream", argv, cpus=pin["upstream"], log_dir=self.logs)
        self.services["upstream"].wait_ready(f"http://127.0.0.1:{up_port}/healthz")
        self.urls["direct"] = f"http://127.0.0.1:{up_port}"
        if "sidecar" in a.targets:
            self.start_sidecar("sidecar", up_port, clients=1)
        if "haproxy" in a.targets:
            port = procs.free_port()
            cfg = os.path.join(self.work, "haproxy.cfg")
            text = configs.haproxy_cfg(listen_port=port, upstream_port=up_port, threads=a.workers,
                                       maxconn=self.max_connections, upstream_socket=self.up_socket)
            # -db: foreground, no daemon, so /proc/PID is haproxy itself.
            self.start_proxy("haproxy", port, cfg, text, [self.haproxy_bin, "-f", cfg, "-db"],
                             ready=f"http://127.0.0.1:{port}{configs.HAPROXY_READY}", metrics=None)
        if "envoy" in a.targets:
            port, admin = procs.free_port(), procs.free_port()
            self.access_logs["envoy"] = os.path.join(self.work, "envoy-access.log")
            cfg = os.path.join(self.work, "envoy.json")
            text = configs.envoy_yaml(listen_port=port, upstream_port=up_port, admin_port=admin,
                                      access_log=self.access_logs["envoy"], upstream_socket=self.up_socket)
            argv = [self.envoy_bin, "-c", cfg, "--concurrency", str(a.workers), "--log-level", "warn",
                    "--disable-hot-restart"]
            self.start_proxy("envoy", port, cfg, text, argv, ready=f"http://127.0.0.1:{admin}/ready",
                             metrics=f"http://127.0.0.1:{admin}/stats/prometheus")
        if a.scale and "sidecar" in a.targets and layout == a.layouts[0]:
            self.start_sidecar("sidecar_clients", up_port, clients=a.scale_clients)
        # Every target must answer the benchmark's request with 200 before
        # anything is measured (a 401/403 here means the configs disagree).
        for t, url in self.urls.items():
            status = procs.http_status_with(url + GET_PATH, {"Authorization": f"Bearer {configs.API_KEY}"})
            if status != 200:
                raise RuntimeError(f"{t} answered {status} to the benchmark request")
        time.sleep(1.0)
        self.memory[layout] = {}
        for t in self.urls:
            svc = self.services["upstream" if t == "direct" else t]
            self.memory[layout][t] = {"idle_kib": procs.memory_kib(svc.pid).get("VmRSS")}
        # Keep the harness itself (and its RSS sampler) off the proxy's core.
        try:
            cpus = {int(c) for c in pin["load"].split(",")} if pin["load"] else range(os.cpu_count() or 1)
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass

    def start_sidecar(self, name, up_port, *, clients):
        port, admin = procs.free_port(), procs.free_port()
        tag = os.path.join(self.work, name)
        os.makedirs(tag, exist_ok=True)
        self.access_logs[name] = os.path.join(tag, "sidecar-access.log")
        cfg = os.path.join(self.work, f"{name}.yaml")
        app = f"unix:{self.up_socket}" if self.up_socket else f"127.0.0.1:{up_port}"
        text = configs.sidecar_yaml(listen=f"127.0.0.1:{port}", app=app,
                                    admin=f"127.0.0.1:{admin}", workers=self.a.workers, work_dir=tag,
                                    max_connections=self.max_connections, clients=clients)
        self.start_proxy(name, port, cfg, text, [self.sidecar_bin, "--config", cfg],
                         ready=f"http://127.0.0.1:{admin}/readyz", metrics=f"http://127.0.0.1:{admin}/metrics",
                         env={"RUST_LOG": "warn"})

    def stop(self):
        for name, svc in reversed(list(self.services.items())):
            svc.stop()
        self.services = {}

    # ------------------------------------------------------------ runs

    def one(self, scenario, target, rep, rate=None, seconds=None, record=True, connections=None, store=True):
        """One load run. `record`: measure the processes' cost too and return
        the run (appended to self.runs when `store`); otherwise only the load
        generator's result."""
        a, pin = self.a, self.pin
        connections = connections or a.connections
        url = self.urls[target]
        headers = [f"Authorization: Bearer {configs.API_KEY}"]
        script = None
        if scenario == "closed_post_1k":
            url += POST_PATH
            script = os.path.join(self.work, "post.lua")
        else:
            url += GET_PATH
        if scenario == "closed_no_keepalive":
            headers.append("Connection: close")
        proxy = self.services.get(target) if target != "direct" else None
        upstream = self.services["upstream"]
        before = self._cpu()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        host0 = procs.host_busy_seconds()
        load_avg = os.getloadavg()[0]
        t0 = time.monotonic()
        watched = [proxy.pid] if proxy else [upstream.pid]
        with procs.RssSampler(watched) as rss:
            if scenario == "fixed_rate":
                res = load.oha(url, seconds=seconds or a.fixed_seconds, connections=connections, cpus=pin["load"],
                               headers=headers, rate=rate, oha_bin=self.oha_bin)
            else:
                res = load.wrk(url, seconds=seconds or a.seconds, connections=connections, cpus=pin["load"],
                               headers=headers, script=script)
        wall = time.monotonic() - t0
        after = self._cpu()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        host1 = procs.host_busy_seconds()
        if not record:
            return res
        d = {k: after[k] - before[k] for k in before}
        loadgen = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        me = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
        ours = sum(d.values()) + loadgen + me
        n = max(1, res["requests"])
        run = {
            "scenario": scenario, "target": target, "rep": rep, "layout": self.layout, "connections": connections,
            "load": res, "wall_s": wall,
            "load_average_1m": load_avg, "cpu_s": d, "loadgen_cpu_s": loadgen,
            "upstream_cpu_us_per_req": d["upstream"] * 1e6 / n,
            "foreign_cpu_cores": max(0.0, (host1 - host0) - ours) / wall,
        }
        if proxy:
            run["proxy_cpu_us_per_req"] = d[target] * 1e6 / n
            run["proxy_cpu_util"] = d[target] / res["duration_s"]
            run["proxy_peak_rss_kib"] = rss.peak[proxy.pid]
            if target in self.access_logs:
                run["access_log_lines_per_req"] = self._drain_access_log(target) / n
        else:
            run["upstream_peak_rss_kib"] = rss.peak[upstream.pid]
        if store:
            self.runs.append(run)
        lat = res["latency_s"]
        log(f"  {scenario:<20} {target:<15} c{connections:<5} {res['rps']:>10,.0f} req/s  p50 {lat.get('p50', 0) * 1e6:>8,.0f} µs  "
            f"p99 {lat.get('p99', 0) * 1e6:>8,.0f} µs  cpu/req {run.get('proxy_cpu_us_per_req', 0):6.1f} µs  "
            f"errors {res['errors']}  other load {run['foreign_cpu_cores']:.2f} cores")
        return run

    def _cpu(self):
        return {name: procs.cpu_seconds(s.pid) for name, s in self.services.items()}

    def _drain_access_log(self, target):
        """Lines the proxy logged for the last run; then empties the file
        (both proxies append, so writing goes on at the new end)."""
        path = self.access_logs[target]
        time.sleep(1.2)  # Envoy flushes its access log once a second
        lines = 0
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    lines += chunk.count(b"\n")
            os.truncate(path, 0)
        except OSError:
            pass
        return lines

    def calibrate(self):
        """The fixed rate: half of a closed-loop maximum measured now.

        `--rate-basis direct` takes half of the direct maximum, as the issue
        words it. On a machine where one proxy core cannot even serve that
        rate, that measures an overloaded proxy's queue (seconds), not added
        latency; so the default, `slowest`, takes half of the slowest
        target's maximum: every target then runs at about half its capacity.
        """
        a = self.a
        peak = {}
        for t in self.targets() if a.rate_basis == "slowest" else ["direct"]:
            self.wait_quiet(a.quiet_wait)
            peak[t] = self.one("closed_keepalive", t, -1, seconds=a.calib_s, record=False)["rps"]
        self.calibration = peak
        basis = min(peak, key=peak.get)
        rate = max(100, int(peak[basis] / 2 / 100) * 100)
        shown = ", ".join(f"{t} {v:,.0f}" for t, v in peak.items())
        if basis == "direct":
            return rate, f"half of the direct closed-loop maximum ({shown} req/s, measured first)"
        return rate, (f"half of the slowest target's closed-loop maximum ({shown} req/s, measured first), so that "
                      f"no target is overloaded; half of direct would be {int(peak['direct'] / 2):,} req/s")

    def measure(self):
        a = self.a
        with open(os.path.join(self.work, "post.lua"), "w") as f:
            f.write(configs.wrk_post_lua(configs.post_body(a.post_bytes)))
        log(f"layout {self.layout}: warm-up")
        for t in self.urls:
            self.one("closed_keepalive", t, -1, seconds=a.warmup_s, record=False)
        self.calibration = {}
        if a.rate:
            self.rate, self.rate_basis = a.rate, "set with --rate/BENCH_RATE"
        elif "fixed_rate" in a.scenarios:
            self.rate, self.rate_basis = self.calibrate()
        else:
            self.rate, self.rate_basis = 0, "not run"
        for t in self.access_logs:
            self._drain_access_log(t)
        self.layout_info[self.layout] = {"fixed_rate": self.rate, "rate_basis": self.rate_basis,
                                         "calibration_rps": self.calibration, "pinning": self.pin}
        targets = self.targets()
        for rep in range(a.reps):
            order = targets[rep % len(targets):] + targets[: rep % len(targets)]
            log(f"layout {self.layout}: repetition {rep + 1}/{a.reps} (order {', '.join(order)})")
            for sc in a.scenarios:
                for t in order:
                    self.measured(sc, t, rep)
        self.collect()

    def targets(self):
        """The targets compared in every scenario, in their fixed order."""
        return [t for t in ("direct", *PROXIES) if t in self.urls]

    def measured(self, scenario, target, rep):
        """One recorded run, on a quiet machine if one can be had: waits (up
        to --quiet-wait s) for other processes to calm down first, and runs
        again (up to --retries times) when they disturbed it anyway."""
        a = self.a
        for attempt in range(a.retries + 1):
            waited = self.wait_quiet(a.quiet_wait)
            self.one(scenario, target, rep, rate=self.rate)
            run = self.runs[-1]
            run["waited_for_quiet_s"], run["attempt"] = waited, attempt + 1
            if run["foreign_cpu_cores"] <= DISTURBED_CORES or attempt == a.retries:
                return
            log(f"  (other processes used {run['foreign_cpu_cores']:.2f} cores: running it again)")
            self.runs.pop()

    def wait_quiet(self, max_wait):
        """Seconds waited until other processes used under QUIET_CORES over
        half a second (or max_wait passed)."""
        start = time.monotonic()
        while time.monotonic() - start < max_wait:
            c0, s0, h0 = sum(self._cpu().values()), _self_cpu(), procs.host_busy_seconds()
            time.sleep(0.5)
            c1, s1, h1 = sum(self._cpu().values()), _self_cpu(), procs.host_busy_seconds()
            if ((h1 - h0) - (c1 - c0) - (s1 - s0)) / 0.5 < QUIET_CORES:
                break
        return round(time.monotonic() - start, 1)

    def collect(self):
        """After the runs of a layout: memory of each process and a last
        metrics scrape."""
        mine = [r for r in self.runs if r["layout"] == self.layout]
        memory = self.memory[self.layout]
        for t in self.urls:
            svc = self.services["upstream" if t == "direct" else t]
            mem = procs.memory_kib(svc.pid)
            key = "upstream_peak_rss_kib" if t == "direct" else "proxy_peak_rss_kib"
            memory[t]["load_peak_kib"] = max((r.get(key) or 0 for r in mine if r["target"] == t), default=0)
            memory[t]["hwm_kib"] = mem.get("VmHWM")
            memory[t]["after_kib"] = mem.get("VmRSS")
            memory[t]["threads"] = procs.thread_count(svc.pid)
        for t in ("sidecar", "envoy"):
            if t in self.services:
                try:
                    text = procs.http_get(self.services[t].metrics_url)
                    with open(os.path.join(self.work, f"{t}-{self.layout}-metrics.txt"), "w") as f:
                        f.write(text)
                    dropped = [ln for ln in text.splitlines() if ln.startswith("paymesh_access_log_dropped_total")]
                    if dropped and float(dropped[0].split()[-1]) > 0:
                        self.notes.append(f"the sidecar dropped {dropped[0].split()[-1]} access-log lines "
                                          f"(its writer fell behind; {self.layout})")
                except OSError as e:
                    self.notes.append(f"could not scrape {t} metrics: {e}")

    # ------------------------------------------------------------ scale

    def scale(self):
        """The sidecar's CPU per request (closed loop, keep-alive GET) with 1
        configured client against --scale-clients, and with few against many
        concurrent connections, haproxy's with few against many too;
        interleaved repetitions like the rest."""
        a = self.a
        few, many = a.scale_connections
        if many > self.max_connections:
            self.scale_notes.append(
                f"Many connections: {self.max_connections:,} instead of {many:,}: the open-file limit here is "
                f"{self.fd_limit:,} (the hard limit; this harness cannot raise it), and the sidecar accepts at most "
                f"(limit − 128) / 2 client connections.")
            many = self.max_connections
        plan = [("clients", 1, "sidecar", a.connections), ("clients", a.scale_clients, "sidecar_clients", a.connections),
                ("connections", few, "sidecar", few), ("connections", many, "sidecar", many)]
        # haproxy through the same connection counts: how much of the
        # sidecar's growth any proxy pays here (the kernel's and the load
        # generator's share of many connections on one core).
        if "haproxy" in self.services:
            plan += [("connections_haproxy", few, "haproxy", few), ("connections_haproxy", many, "haproxy", many)]
        for t in ("sidecar", "sidecar_clients"):
            self.one("closed_keepalive", t, -1, seconds=self.a.warmup_s, record=False)
        for rep in range(a.reps):
            log(f"scale: repetition {rep + 1}/{a.reps}")
            for kind, variant, target, conns in plan[rep % 2:] + plan[:rep % 2]:
                self.wait_quiet(a.quiet_wait)
                run = self.one("closed_keepalive", target, rep, connections=conns, store=False)
                self.scale_runs.append({
                    "kind": kind, "variant": variant, "target": target, "connections": conns, "rep": rep,
                    "cpu_us_per_req": run.get("proxy_cpu_us_per_req"), "rps": run["load"]["rps"],
                    "errors": run["load"]["errors"], "foreign_cpu_cores": run["foreign_cpu_cores"],
                })

    # ------------------------------------------------------------ idle

    def idle(self):
        """RSS per idle keep-alive connection of each proxy: N connections,
        each having made one request, held while the proxy's RSS is read."""
        request = idle.request_bytes(GET_PATH, [f"Authorization: Bearer {configs.API_KEY}"])
        for n in self.a.idle:
            if n > self.max_connections:
                self.idle_notes.append(
                    f"{self.max_connections:,} connections instead of {n:,}: the open-file limit here is "
                    f"{self.fd_limit:,} (the hard limit; this harness cannot raise it), and the sidecar accepts at "
                    f"most (limit − 128) / 2 client connections; every proxy gets the same count.")
        for t in PROXIES:
            if t not in self.services:
                continue
            pid = self.services[t].pid
            for n in self.a.idle:
                n_eff = min(n, self.max_connections)
                time.sleep(1.0)
                before = procs.memory_kib(pid).get("VmRSS")
                with idle.hold(self.ports[t], n_eff, request) as held:
                    # Idle means idle for a while: the sidecar parks an
                    # HTTP/1 connection after 0.5–1 s with nothing in flight.
                    time.sleep(IDLE_SETTLE_S)
                    with_them = procs.memory_kib(pid).get("VmRSS")
                    count = len(held.socks)
                    alive = self.services[t].alive()
                row = {"target": t, "n": n, "asked": n_eff, "held": count, "failed": held.failed,
                       "first_error": held.first_error, "rss_before_kib": before, "rss_with_kib": with_them,
                       "alive": alive}
                self.idle_results.append(row)
                per = (with_them - before) * 1024 / count / 1000 if count else float("nan")
                log(f"  idle {t:<8} {count:>6,} held ({held.failed} failed): RSS {before:,} -> {with_them:,} KiB, "
                    f"{per:.1f} KB per connection")
                if held.failed:
                    self.idle_notes.append(f"{t}: {held.failed} of {n_eff:,} connections failed "
                                           f"(first: {held.first_error}).")

    # ------------------------------------------------------------ micro

    def micro(self):
        if not self.a.micro:
            return {"skipped": "not run (BENCH_MICRO=0, --no-micro or smoke run)."}
        return micro.run(ROOT, self.a.jobs, self.started_at)

    # ------------------------------------------------------------ report

    def write(self, micro, load_start):
        a = self.a
        layouts = {}
        for name in a.layouts:
            if name not in self.layout_info:
                continue
            mine = [r for r in self.runs if r["layout"] == name]
            summary = report.summarize(mine, a.scenarios)
            added = report.added_latency(mine)
            memory = self.memory.get(name, {})
            layouts[name] = {
                "description": LAYOUTS[name], **self.layout_info[name],
                "summary": summary, "added_latency_us": added, "ratios": report.ratios(summary), "memory": memory,
                "headline": report.headline(summary, added, memory),
            }
        foreign = [r["foreign_cpu_cores"] for r in self.runs] + [r["foreign_cpu_cores"] for r in self.scale_runs]
        busiest = max(foreign, default=0)
        median_foreign = report.spread(foreign) or {"median": 0}
        busy = None
        if busiest > 0.1:
            busy = (f"other processes used up to {busiest:.2f} cores (median "
                    f"{median_foreign['median']:.2f}) during the runs; figures are noisier than on a quiet machine.")
        idle_summary = report.idle_summary(self.idle_results)
        scale = report.scale_summary(self.scale_runs)
        doc = {
            "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "BENCH_SMOKE=1 make bench" if a.smoke else "make bench",
            "machine": tools.machine(),
            "versions": self.versions,
            "load_average_start": f"{load_start:.2f}",
            "load_average_end": f"{os.getloadavg()[0]:.2f}",
            "settings": {
                "smoke": a.smoke, "reps": a.reps, "closed_s": a.seconds, "fixed_s": a.fixed_seconds,
                "connections": a.connections, "workers": a.workers, "body_bytes": a.body_bytes,
                "post_bytes": a.post_bytes, "layouts": a.layouts, "transport": a.transport, "quiet_wait_s": a.quiet_wait, "retries": a.retries,
                "fd_limit": self.fd_limit, "max_connections": self.max_connections, "idle": a.idle,
                "scale_clients": a.scale_clients, "scale_connections": a.scale_connections,
            },
            "scenarios": {k: SCENARIOS[k] for k in a.scenarios},
            "layouts": layouts,
            "idle": self.idle_results,
            "idle_summary": idle_summary,
            "idle_notes": self.idle_notes,
            "scale": scale,
            "scale_notes": self.scale_notes,
            "scale_runs": self.scale_runs,
            "micro": micro,
            "busy_warning": busy,
            "fairness": configs.__doc__.strip().split("\n\n", 1)[1],
            "notes": self.notes,
            "runs": self.runs,
        }
        doc["targets"] = report.targets(layouts, idle_summary, scale, micro)
        md = report.write(self.out, doc)
        print(md)
        log(f"wrote {self.out}/report.md, report.json, latency.svg")
        return doc


def _self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    bench.started_at = time.time()
    load_start = os.getloadavg()[0]
    bench.prepare()
    for layout in args.layouts:
        try:
            bench.start(layout)
            bench.measure()
            if layout == args.layouts[0]:
                # Last in this layout, as both leave the proxies' heaps
                # grown; idle first, so that its "RSS before" is not a heap
                # the scale run's 10,000 busy connections grew (new
                # connections would reuse that freed memory and look cheap).
                if args.idle:
                    bench.idle()
                if args.scale and "sidecar" in args.targets:
                    bench.scale()
        finally:
            bench.stop()
    # Criterion gets the whole machine back (its writer thread included).
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except OSError:
        pass
    bench.write(bench.micro(), load_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
