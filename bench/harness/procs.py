"""Processes under test: start pinned, wait until ready, read their cost
from /proc, stop.

CPU time is `utime + stime` from /proc/PID/stat (all threads of the
process, in clock ticks); memory is `VmRSS` / `VmHWM` from
/proc/PID/status. A sampler thread records the largest `VmRSS` seen while
a load runs.
"""

import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    """A port the kernel just handed out on loopback (free right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    """Raises this process's soft RLIMIT_NOFILE to its hard limit (and the
    hard one too, where allowed); every process it starts inherits it.
    Returns the soft limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        wants = [(1 << 20, hard)]
    else:
        wants = [(max(hard, 65536),) * 2, (hard, hard)]
    for want in wants:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid):
    """utime + stime of the whole process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: split after its closing ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid):
    """{'VmRSS': kib, 'VmHWM': kib} of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def host_busy_seconds():
    """CPU seconds spent busy by the whole machine (all CPUs)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    busy = sum(v[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK


def http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def http_status_with(url, headers, timeout=2.0):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode(errors="replace")


class Service:
    """One long-running process of the benchmark (upstream or a proxy)."""

    def __init__(self, name, argv, *, cpus, log_dir, env=None):
        self.name = name
        self.cpus = cpus
        log = open(os.path.join(log_dir, f"{name}.log"), "wb")
        full = ["taskset", "-c", cpus, *argv] if cpus else list(argv)
        # taskset execs the program, so the pid is the program's own.
        self.proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()
        self.pid = self.proc.pid
        self.log_path = os.path.join(log_dir, f"{name}.log")

    def wait_ready(self, url, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if http_status(url) == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout}s; see {self.log_path}")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RssSampler:
    """Samples VmRSS of `pids` every `interval` seconds until stopped."""

    def __init__(self, pids, interval=0.1):
        self.pids = pids
        self.interval = interval
        self.peak = {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    self.peak[pid] = max(self.peak[pid], memory_kib(pid).get("VmRSS", 0))
                except OSError:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
