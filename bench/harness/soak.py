"""`make soak` (and the end of `make bench`): sustained mixed traffic through
the whole pod, printing what grows.

The pod as it runs in Kubernetes, on loopback: paymesh-orchestrator (its own
data dir), paymesh-app, paymesh-telemetryd writing the telemetry file, and
paymesh-sidecar in front with a file access log that rotates at a small
size. Client threads send a mix through the sidecar: charges (half on each
path), reads of them, refunds, and requests that are refused (a bad key,
a malformed id), all on keep-alive connections.

Every `--report` seconds it prints, for each process, RSS and open fds, and
the data dir's and the logs' sizes. At the end it compares each figure after
the warm-up (the first `--warmup` seconds) with its first post-warm-up
sample and says whether it stayed within +-10 % (`flat`; fd counts may also
move by one) or not (`grows` / `shrinks`). The orchestrator's data dir grows by design (it stores every
payment); it is reported with its bytes per payment instead. The access log
is judged against its rotation bound, (keep + 1) x max_bytes: it fills up to
it, then stays there.

Prints numbers; asserts nothing. Flags or SOAK_* variables:
  --duration (SOAK_DURATION, default 300 s), --warmup (SOAK_WARMUP, 120 s:
  the orchestrator's SQLite page cache, bounded at 16 MiB, fills first),
  --report (SOAK_REPORT, 15 s), --clients (SOAK_CLIENTS, 8),
  --bin-dir (PAYMESH_BIN_DIR, default target/release).
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "sk_soak_7d1e0c9b"
TOLERANCE = 0.10
ACCESS_LOG_MAX_BYTES = 1 << 20
ACCESS_LOG_KEEP = 3


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=env_int("SOAK_DURATION", 300), help="seconds of load")
    p.add_argument("--warmup", type=int, default=env_int("SOAK_WARMUP", 120), help="seconds before the baseline")
    p.add_argument("--report", type=int, default=env_int("SOAK_REPORT", 15), help="seconds between samples")
    p.add_argument("--clients", type=int, default=env_int("SOAK_CLIENTS", 8), help="client threads")
    p.add_argument("--bin-dir", default=os.environ.get("PAYMESH_BIN_DIR") or os.path.join(ROOT, "target", "release"))
    a = p.parse_args(argv)
    a.warmup = min(a.warmup, max(a.duration // 3, 1))
    return a


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def size(paths):
    total = 0
    for path in paths:
        if os.path.isdir(path):
            for d, _, files in os.walk(path):
                for f in files:
                    try:
                        total += os.path.getsize(os.path.join(d, f))
                    except OSError:
                        pass
        elif os.path.exists(path):
            total += os.path.getsize(path)
    return total


def logs_of(path, keep):
    return [path] + [f"{path}.{n}" for n in range(1, keep + 1)]


class Traffic:
    """Client threads sending a mixed load through the sidecar."""

    def __init__(self, port, clients):
        self.port = port
        self.stop = threading.Event()
        self.counts = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(clients)]

    def count(self, kind, status):
        with self.lock:
            k = f"{kind} {status // 100}xx" if status else f"{kind} error"
            self.counts[k] = self.counts.get(k, 0) + 1

    def run(self, i):
        rnd = random.Random(i)
        conn = None
        charges = []
        n = 0
        auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            n += 1
            r = rnd.random()
            if r < 0.45 or not charges:
                kind, method, path = "charge", "POST", "/v1/charges"
                body = json.dumps({"amount": 1000 + n % 500, "currency": "usd", "source": "tok_visa"})
                headers = {**auth, "Idempotency-Key": f"soak-{i}-{n}"}
            elif r < 0.80:
                kind, method, path, body, headers = "read", "GET", f"/v1/charges/{rnd.choice(charges)}", None, auth
            elif r < 0.90:
                kind, method, path = "refund", "POST", "/v1/refunds"
                body = json.dumps({"charge": charges.pop(rnd.randrange(len(charges))), "amount": 100})
                headers = {**auth, "Idempotency-Key": f"soak-r-{i}-{n}"}
            elif r < 0.95:
                kind, method, path, body = "bad key", "GET", "/v1/charges/ch_x", None
                headers = {"Authorization": "Bearer sk_wrong"}
            else:
                kind, method, path, body, headers = "bad id", "GET", "/v1/charges/nonsense", None, auth
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.count(kind, resp.status)
                if kind == "charge" and resp.status == 201:
                    charges.append(json.loads(data)["id"])
                    del charges[:-1000]  # a bounded working set per thread
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError):
                self.count(kind, 0)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)

    def total(self):
        with self.lock:
            return sum(self.counts.values())


def verdict(values, slack=0):
    """flat / grows / shrinks against the first value, and the worst change.
    `slack` absolute units are flat too (an fd count of 4 that reads 5 while
    a temporary file is open is not a leak)."""
    base = values[0]
    worst_abs = max((v - base for v in values), key=abs)
    if abs(worst_abs) <= slack:
        return "flat", worst_abs / base if base else 0.0
    if base == 0:
        return "grows", 0.0
    changes = [(v - base) / base for v in values]
    worst = max(changes, key=abs)
    if abs(worst) <= TOLERANCE:
        return "flat", worst
    return ("grows" if worst > 0 else "shrinks"), worst


def main(argv=None):
    a = parse_args(argv if argv is not None else sys.argv[1:])
    for name in ("paymesh-sidecar", "paymesh-app", "paymesh-orchestrator", "paymesh-telemetryd"):
        if not os.access(os.path.join(a.bin_dir, name), os.X_OK):
            sys.exit(f"soak: {name} not in {a.bin_dir}: cargo build --release (or set PAYMESH_BIN_DIR)")
    work = tempfile.mkdtemp(prefix="paymesh-soak-")
    logs, data, state, run = (os.path.join(work, d) for d in ("logs", "data", "state", "run"))
    for d in (logs, data, state, run):
        os.makedirs(d)
    orch_port, app_port, listen, admin = (procs.free_port() for _ in range(4))
    access_log = os.path.join(state, "access.log")
    events = os.path.join(state, "switch-events.jsonl")
    with open(os.path.join(work, "sidecar.yaml"), "w") as f:
        f.write(f"""listen: "127.0.0.1:{listen}"
app: "127.0.0.1:{app_port}"
admin: "127.0.0.1:{admin}"
workers: 2
clients:
  - id: soak
    api_key_sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"
    rate: {{ per_second: 1000000, burst: 1000000 }}
migration:
  etcd_endpoints: []
  cache_file: {state}/migration.json
  defaults: {{ charge: 50, refund: 50, disbursement: 0 }}
overload:
  telemetry_file: {run}/telemetry.json
  events_file: {events}
  # Nothing is shed: the access log and the detailed metrics must stay on
  # for the whole soak, however busy the host (telemetryd still runs).
  components: []
access_log:
  path: {access_log}
  rotate: {{ max_bytes: {ACCESS_LOG_MAX_BYTES}, keep: {ACCESS_LOG_KEEP} }}
""")
    b = lambda n: os.path.join(a.bin_dir, n)  # noqa: E731
    services = []
    try:
        orch = procs.Service("orchestrator", [b("paymesh-orchestrator"), "--listen", f"127.0.0.1:{orch_port}",
                                              "--data-dir", data], cpus=None, log_dir=logs)
        services.append(orch)
        orch.wait_ready(f"http://127.0.0.1:{orch_port}/healthz")
        app = procs.Service("app", [b("paymesh-app"), "--listen", f"127.0.0.1:{app_port}",
                                    "--orchestrator", f"http://127.0.0.1:{orch_port}"], cpus=None, log_dir=logs)
        services.append(app)
        app.wait_ready(f"http://127.0.0.1:{app_port}/healthz")
        tel = procs.Service("telemetryd", [b("paymesh-telemetryd"), "--out", f"{run}/telemetry.json",
                                           "--interval", "1s"], cpus=None, log_dir=logs)
        services.append(tel)
        sidecar = procs.Service("sidecar", [b("paymesh-sidecar"), "--config", os.path.join(work, "sidecar.yaml")],
                                cpus=None, log_dir=logs)
        services.append(sidecar)
        sidecar.wait_ready(f"http://127.0.0.1:{admin}/readyz")

        traffic = Traffic(listen, a.clients)
        for t in traffic.threads:
            t.start()
        print(f"soak: {a.duration} s of mixed traffic, {a.clients} clients, warm-up {a.warmup} s, "
              f"binaries {a.bin_dir}, access log rotating at {ACCESS_LOG_MAX_BYTES} B x {ACCESS_LOG_KEEP}")
        header = ("t_s", "requests", "rps") + tuple(f"{s.name}_rss_kib" for s in services) + \
            tuple(f"{s.name}_fds" for s in services) + ("data_dir_kib", "access_log_kib", "events_kib")
        print(" ".join(f"{h:>14}" for h in header))
        samples = []
        started = time.monotonic()
        last_t, last_n = started, 0
        while time.monotonic() - started < a.duration:
            time.sleep(min(a.report, max(a.duration - (time.monotonic() - started), 0.1)))
            now, n = time.monotonic(), traffic.total()
            row = {
                "t": now - started,
                "requests": n,
                "rps": (n - last_n) / (now - last_t),
                **{f"{s.name}_rss_kib": procs.memory_kib(s.pid).get("VmRSS", 0) for s in services},
                **{f"{s.name}_fds": fds(s.pid) for s in services},
                "data_dir_kib": size([data]) / 1024,
                "access_log_kib": size(logs_of(access_log, ACCESS_LOG_KEEP + 1)) / 1024,
                "events_kib": size(logs_of(events, 5)) / 1024,
            }
            last_t, last_n = now, n
            samples.append(row)
            print(" ".join(f"{row[k]:>14.0f}" if k != "t" else f"{row[k]:>14.0f}"
                           for k in ("t", "requests", "rps", *header[3:])))
            for s in services:
                if not s.alive():
                    print(f"soak: {s.name} exited; see {s.log_path}")
                    return 1
        traffic.stop.set()
        for t in traffic.threads:
            t.join(timeout=15)

        print("\nrequests by kind and class:", json.dumps(dict(sorted(traffic.counts.items()))))
        after = [r for r in samples if r["t"] >= a.warmup] or samples[-1:]
        print(f"\nafter the warm-up ({len(after)} samples from t={after[0]['t']:.0f} s), each figure against its "
              f"first sample (+-{TOLERANCE:.0%} is flat):")
        for k in header[3:]:
            values = [r[k] for r in after]
            if k == "data_dir_kib":
                charges = sum(v for kk, v in traffic.counts.items() if kk.startswith(("charge 2", "refund 2")))
                per = values[-1] * 1024 / charges if charges else 0
                print(f"  {k:>22}: {values[0]:.0f} -> {values[-1]:.0f} (grows with the store by design: "
                      f"{per:.0f} B per stored payment)")
                continue
            if k == "access_log_kib":
                cap = (ACCESS_LOG_KEEP + 1) * ACCESS_LOG_MAX_BYTES / 1024
                seen = max(r[k] for r in samples)
                print(f"  {k:>22}: {values[0]:.0f} -> {values[-1]:.0f}, max {seen:.0f}: "
                      f"{'bounded' if seen <= cap else 'UNBOUNDED'} by rotation at {cap:.0f}")
                continue
            v, worst = verdict(values, slack=1 if k.endswith("_fds") else 0)
            print(f"  {k:>22}: {values[0]:.0f} -> {values[-1]:.0f}, min {min(values):.0f}, max {max(values):.0f}: "
                  f"{v} ({worst:+.1%})")
        return 0
    finally:
        for s in reversed(services):
            s.stop()
        if os.environ.get("SOAK_KEEP", "") in ("", "0"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"soak: files kept in {work}")


if __name__ == "__main__":
    sys.exit(main())
