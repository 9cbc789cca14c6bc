#!/usr/bin/env python3
"""Context switches of the sidecar per request, by thread name.

    python3 bench/harness/switches.py [--workers 1,2] [--runs 3] [--seconds 5] [--connections 16]

Starts `paymesh-bench-upstream` and a release sidecar with the harness's
config (every feature on), unpinned; for each run, reads every thread's
`voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` from
/proc/PID/task/*/status around one wrk keep-alive GET run, and prints them
per request, summed by thread name, with the sidecar's CPU per request.
The worker counts alternate run by run, so drift falls on all alike.
"""

import argparse
import collections
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import configs  # noqa: E402
import load  # noqa: E402
import procs  # noqa: E402
import tools  # noqa: E402
from settings import GET_PATH, ROOT  # noqa: E402


def switches(pid):
    """{thread name: [voluntary, involuntary]} summed over the threads."""
    out = collections.defaultdict(lambda: [0, 0])
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
        out[name][0] += int(status["voluntary_ctxt_switches"])
        out[name][1] += int(status["nonvoluntary_ctxt_switches"])
    return out


def one(sidecar_bin, upstream_port, workers, a, work):
    port, admin = procs.free_port(), procs.free_port()
    cfg = os.path.join(work, f"sidecar-{workers}.yaml")
    with open(cfg, "w") as f:
        f.write(configs.sidecar_yaml(listen=f"127.0.0.1:{port}", app=f"127.0.0.1:{upstream_port}",
                                     admin=f"127.0.0.1:{admin}", workers=workers, work_dir=work,
                                     max_connections=configs.fd_budget(procs.raise_fd_limit())))
    svc = procs.Service(f"sidecar-{workers}", [sidecar_bin, "--config", cfg], cpus=None, log_dir=work,
                        env={"RUST_LOG": "warn"})
    try:
        svc.wait_ready(f"http://127.0.0.1:{admin}/readyz")
        before, cpu0 = switches(svc.pid), procs.cpu_seconds(svc.pid)
        res = load.wrk(f"http://127.0.0.1:{port}{GET_PATH}", seconds=a.seconds, connections=a.connections,
                       cpus=None, headers=[f"Authorization: Bearer {configs.API_KEY}"])
        after, cpu1 = switches(svc.pid), procs.cpu_seconds(svc.pid)
    finally:
        svc.stop()
    n = res["requests"]
    print(f"workers={workers} requests={n} cpu_us_per_req={(cpu1 - cpu0) * 1e6 / n:.1f}")
    for name in sorted(after):
        v, nv = (after[name][i] - before.get(name, [0, 0])[i] for i in (0, 1))
        print(f"  {name:18} voluntary/req {v / n:.3f}  involuntary/req {nv / n:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    sidecar_bin, upstream_bin = tools.build(ROOT, a.jobs)
    tools.wrk()
    with tempfile.TemporaryDirectory() as work:
        up_port = procs.free_port()
        upstream = procs.Service("upstream", [upstream_bin, "--listen", f"127.0.0.1:{up_port}"], cpus=None,
                                 log_dir=work)
        try:
            upstream.wait_ready(f"http://127.0.0.1:{up_port}/healthz")
            for _ in range(a.runs):
                for w in (int(x) for x in a.workers.split(",")):
                    one(sidecar_bin, up_port, w, a, work)
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
