"""Run a rendered pod as local processes, the way the kubelet would.

`Pod` takes a rendered workload (Deployment, StatefulSet, Job) and the other
rendered objects, and:

- materialises its volumes in a temp dir: a ConfigMap or Secret volume gets
  the object's keys as files, an emptyDir or PVC an empty directory;
- maps every mount path to that volume's directory, and rewrites mount paths
  in commands, arguments, environment values, probes and ConfigMap/Secret
  file contents accordingly (so /var/lib/paymesh/migration.json becomes
  <tmp>/volumes/state/migration.json); in what a container runs, only the
  paths it mounts itself, so a path on a volume it lacks is missing for it
  as in the cluster;
- stands in for cluster DNS: http://<service>[.<ns>.svc[.cluster.local]]:<port>
  becomes http://127.0.0.1:<target port>, the target port resolved from the
  selected pods' container ports, as kube-proxy would;
- starts init containers in order (a regular one must exit 0; a native
  sidecar, restartPolicy: Always, must pass its startup probe before the next
  starts), then the main containers, then waits for readiness;
- stops in Kubernetes' order: preStop hooks and SIGTERM to the main
  containers, and once they are gone the sidecars in reverse order, all within
  terminationGracePeriodSeconds.

Probes are polled faster than the kubelet would (every 100 ms), within the
same deadline (initialDelaySeconds + periodSeconds x failureThreshold).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

POLL = 0.1


class PodError(AssertionError):
    """The pod did not start or stop as Kubernetes would have it."""


@dataclass
class Proc:
    name: str
    container: dict[str, Any]
    popen: subprocess.Popen[bytes]
    log: Path
    sidecar: bool
    term_at: float | None = None
    exited_at: float | None = None
    killed: bool = False

    def alive(self) -> bool:
        if self.popen.poll() is None:
            return True
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_targets(objects: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """(service name, service port) -> the container port its target pods
    listen on, resolving named target ports through the pods' containers."""
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
    out: dict[tuple[str, int], int] = {}
    for svc in (o for o in objects if o["kind"] == "Service"):
        selector = svc["spec"].get("selector") or {}
        pods = [
            w["spec"]["template"]
            for w in workloads
            if _labels_match(selector, w["spec"]["template"]["metadata"].get("labels", {}))
        ]
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            if isinstance(target, str) and not target.isdigit():
                numbers = {
                    p["containerPort"]
                    for pod in pods
                    for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
                    for p in c.get("ports", [])
                    if p.get("name") == target
                }
                if len(numbers) != 1:
                    continue  # no (or ambiguous) endpoint: not routable
                target = numbers.pop()
            out[(svc["metadata"]["name"], int(port["port"]))] = int(target)
    return out


class Pod:
    def __init__(
        self,
        workload: dict[str, Any],
        objects: list[dict[str, Any]],
        root: Path,
        bin_dir: Path,
        namespace: str = "default",
        name: str | None = None,
    ):
        self.workload = workload
        self.objects = objects
        self.root = root
        self.bin_dir = bin_dir
        self.namespace = namespace
        self.name = name or f"{workload['metadata']['name']}-0"
        self.spec = workload["spec"]["template"]["spec"] if workload["kind"] != "Pod" else workload["spec"]
        self.procs: list[Proc] = []
        self.volume_dirs: dict[str, Path] = {}
        self.mounts: dict[str, Path] = {}
        self.services = service_targets(objects)
        self.shutdown: dict[str, Any] = {}
        (root / "logs").mkdir(parents=True, exist_ok=True)
        (root / "home").mkdir(exist_ok=True)
        self._map_mounts()

    # ------------------------------------------------------------------
    # volumes and rewriting

    def _map_mounts(self) -> None:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for c in self.spec.get("initContainers", []) + self.spec["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    raise PodError(f"container {c['name']} mounts unknown volume {m['name']}")
                if "subPath" in m:
                    raise PodError(f"container {c['name']}: subPath mounts are not supported here")
                d = self.root / "volumes" / m["name"]
                prev = self.mounts.get(m["mountPath"])
                if prev is not None and prev != d:
                    raise PodError(f"{m['mountPath']} is mounted from two different volumes")
                self.mounts[m["mountPath"]] = d
        self.volume_dirs = {n: self.root / "volumes" / n for n in volumes}
        # Longest first, so /etc/paymesh/config wins over /etc/paymesh.
        self._mount_res = [
            (mp, re.compile(r"(?<![A-Za-z0-9_.\-/])" + re.escape(mp) + r"(?![A-Za-z0-9_.\-])"), str(d))
            for mp, d in sorted(self.mounts.items(), key=lambda kv: -len(kv[0]))
        ]
        names = sorted({svc for svc, _ in self.services}, key=len, reverse=True)
        # A Service name in host position: after "://", or at the start of a
        # value or list item ("etcd:2379", "a,etcd:2379").
        self._svc_re = (
            re.compile(
                r"(?:(?<=://)|^|(?<=[\s,=\"']))(?P<host>"
                + "|".join(re.escape(n) for n in names)
                + r")(?:\.(?P<ns>[a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?)?:(?P<port>[0-9]+)\b",
                re.MULTILINE,
            )
            if names
            else None
        )

    def rewrite(self, text: str, c: dict[str, Any] | None = None) -> str:
        """Mount paths to local dirs (only those container `c` mounts, when
        given), Service addresses to local ports."""
        mounted = None if c is None else {m["mountPath"] for m in c.get("volumeMounts", [])}
        for mount_path, pattern, target in self._mount_res:
            if mounted is None or mount_path in mounted:
                text = pattern.sub(lambda _m, t=target: t, text)
        if self._svc_re is not None:

            def svc(m: re.Match[str]) -> str:
                port = self.services.get((m.group("host"), int(m.group("port"))))
                if port is None or (m.group("ns") and m.group("ns") != self.namespace):
                    return m.group(0)
                return f"127.0.0.1:{port}"

            text = self._svc_re.sub(svc, text)
        return text

    def _find(self, kind: str, name: str) -> dict[str, Any] | None:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        return None

    def materialise_volumes(self) -> None:
        for v in self.spec.get("volumes", []):
            d = self.volume_dirs[v["name"]]
            d.mkdir(parents=True, exist_ok=True)
            if "configMap" in v:
                self._write_source(d, v["name"], "ConfigMap", v["configMap"], v["configMap"]["name"])
            elif "secret" in v:
                self._write_source(d, v["name"], "Secret", v["secret"], v["secret"]["secretName"])
            elif "projected" in v:
                # Several ConfigMaps and Secrets in one directory.
                for src in v["projected"]["sources"]:
                    kind = "ConfigMap" if "configMap" in src else "Secret"
                    ref = src.get("configMap") or src.get("secret")
                    if ref is None:
                        raise PodError(f"volume {v['name']}: unsupported projected source {sorted(src)}")
                    self._write_source(d, v["name"], kind, ref, ref["name"])
            elif "emptyDir" in v or "persistentVolumeClaim" in v:
                pass
            else:
                raise PodError(f"volume {v['name']}: unsupported volume type {sorted(v)}")

    def _write_source(self, d: Path, volume: str, kind: str, ref: dict[str, Any], name: str) -> None:
        """Writes the items `ref` picks of the ConfigMap or Secret `name`
        into `d`: nothing when it is missing and `ref` marks it optional."""
        obj = self._find(kind, name)
        if obj is None:
            if ref.get("optional"):
                return
            raise PodError(f"volume {volume}: {kind} {name} does not exist")
        self._write_items(d, self._data(obj), ref.get("items"), f"{kind} {name}")

    def _write_items(self, d: Path, data: dict[str, str], items: list[dict[str, Any]] | None, what: str) -> None:
        pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, path in pairs:
            if key not in data:
                raise PodError(f"{what} has no key {key!r} (keys: {sorted(data)})")
            target = d / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.rewrite(data[key]))

    # ------------------------------------------------------------------
    # containers

    def _env(self, c: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.name,
        }
        for src in c.get("envFrom", []):
            kind = "ConfigMap" if "configMapRef" in src else "Secret"
            ref = src.get("configMapRef") or src.get("secretRef")
            obj = self._find(kind, ref["name"])
            if obj is None:
                raise PodError(f"container {c['name']}: envFrom {kind} {ref['name']} does not exist")
            for k, v in self._data(obj).items():
                env[src.get("prefix", "") + k] = self.rewrite(v, c)
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = self.rewrite(self._expand(str(e["value"]), env), c)
            elif "valueFrom" in e:
                env[e["name"]] = self.rewrite(self._value_from(c, e), c)
            else:
                env[e["name"]] = ""
        return env

    @staticmethod
    def _data(obj: dict[str, Any]) -> dict[str, str]:
        """A ConfigMap's or Secret's keys, decoded."""
        if obj["kind"] == "Secret":
            out = {k: base64.b64decode(x).decode() for k, x in (obj.get("data") or {}).items()}
            out.update(obj.get("stringData") or {})
            return out
        return dict(obj.get("data") or {})

    def _value_from(self, c: dict[str, Any], e: dict[str, Any]) -> str:
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            known = {
                "metadata.name": self.name,
                "metadata.namespace": self.namespace,
                "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1",
                "spec.nodeName": "localhost",
                "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            }
            if path not in known:
                raise PodError(f"container {c['name']}: fieldRef {path} is not emulated")
            return known[path]
        for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if key in vf:
                ref = vf[key]
                obj = self._find(kind, ref["name"])
                data = self._data(obj) if obj else {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return ""
                    raise PodError(f"container {c['name']}: {kind} {ref['name']} key {ref['key']} is missing")
                return data[ref["key"]]
        if "resourceFieldRef" in vf:
            return "1"
        raise PodError(f"container {c['name']}: unsupported valueFrom {sorted(vf)}")

    @staticmethod
    def _expand(text: str, env: dict[str, str]) -> str:
        """Kubernetes' $(VAR) expansion; $$ escapes; unknown stays as is."""

        def sub(m: re.Match[str]) -> str:
            if m.group(0).startswith("$$"):
                return m.group(0)[1:]
            return env.get(m.group(1), m.group(0))

        return re.sub(r"\$\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)

    def argv(self, c: dict[str, Any], env: dict[str, str]) -> list[str]:
        command = list(c.get("command") or [])
        if not command:
            raise PodError(f"container {c['name']} has no command (the image has no entrypoint)")
        argv = [self.rewrite(self._expand(str(a), env), c) for a in command + list(c.get("args") or [])]
        exe = argv[0]
        if "/" not in exe:
            found = shutil.which(exe, path=env["PATH"])
            if found is None:
                raise PodError(
                    f"container {c['name']}: {exe} not found in {self.bin_dir} or on PATH: "
                    f"build the workspace (cargo build --workspace --bins) or set PAYMESH_BIN_DIR"
                )
            argv[0] = found
        elif not Path(exe).exists():
            raise PodError(f"container {c['name']}: {exe} does not exist on this machine")
        return argv

    def _start(self, c: dict[str, Any], sidecar: bool) -> Proc:
        env = self._env(c)
        argv = self.argv(c, env)
        log = self.root / "logs" / f"{c['name']}.log"
        out = open(log, "ab")
        cwd = self.root / "home"
        try:
            popen = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        proc = Proc(c["name"], c, popen, log, sidecar)
        self.procs.append(proc)
        return proc

    def run_to_completion(self, c: dict[str, Any], timeout: float = 60) -> int:
        proc = self._start(c, sidecar=False)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
            raise PodError(f"init container {c['name']} did not finish in {timeout}s:\n{log_tail(proc.log)}") from None

    # ------------------------------------------------------------------
    # probes

    def _port(self, c: dict[str, Any], port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
        raise PodError(f"container {c['name']}: probe port {port!r} is not a named port of it")

    def probe_once(self, c: dict[str, Any], probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            g = probe["httpGet"]
            port = self._port(c, g["port"])
            try:
                if g.get("scheme", "HTTP") == "HTTPS":
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE  # the kubelet does not verify either
                    conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                        "127.0.0.1", port, timeout=timeout, context=ctx
                    )
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                conn.request("GET", g.get("path", "/"))
                status = conn.getresponse().status
                conn.close()
                return 200 <= status < 400
            except OSError:
                return False
        if "tcpSocket" in probe:
            try:
                with socket.create_connection(
                    ("127.0.0.1", self._port(c, probe["tcpSocket"]["port"])), timeout=timeout
                ):
                    return True
            except OSError:
                return False
        if "exec" in probe:
            env = self._env(c)
            argv = [self.rewrite(a, c) for a in probe["exec"]["command"]]
            try:
                return subprocess.run(argv, env=env, capture_output=True, timeout=timeout).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                return False
        raise PodError(f"container {c['name']}: unsupported probe {sorted(probe)}")

    def wait_probe(self, proc: Proc, kind: str, max_wait: float = 60) -> None:
        probe = proc.container[kind]
        budget = float(probe.get("initialDelaySeconds", 0)) + float(probe.get("periodSeconds", 10)) * float(
            probe.get("failureThreshold", 3)
        )
        deadline = time.monotonic() + min(budget, max_wait)
        while time.monotonic() < deadline:
            if not proc.alive():
                raise PodError(
                    f"container {proc.name} exited with {proc.popen.returncode} before its {kind} "
                    f"passed:\n{log_tail(proc.log)}"
                )
            if self.probe_once(proc.container, probe):
                return
            time.sleep(POLL)
        raise PodError(
            f"container {proc.name}: {kind} did not pass within {min(budget, max_wait):.0f}s:\n{log_tail(proc.log)}"
        )

    # ------------------------------------------------------------------
    # lifecycle

    def start(self, ready_timeout: float = 60) -> None:
        """Volumes, init containers in order, main containers, readiness."""
        self.materialise_volumes()
        for c in self.spec.get("initContainers", []):
            if c.get("restartPolicy") == "Always":
                proc = self._start(c, sidecar=True)
                if "startupProbe" in c:
                    self.wait_probe(proc, "startupProbe")
                else:
                    # Started once its process runs; give a crash a moment to show.
                    time.sleep(0.3)
                    if not proc.alive():
                        raise PodError(
                            f"sidecar {c['name']} exited with {proc.popen.returncode}:\n{log_tail(proc.log)}"
                        )
            else:
                rc = self.run_to_completion(c)
                if rc != 0:
                    raise PodError(
                        f"init container {c['name']} exited with {rc}:\n"
                        f"{log_tail(self.root / 'logs' / (c['name'] + '.log'))}"
                    )
        for c in self.spec["containers"]:
            proc = self._start(c, sidecar=False)
            if "startupProbe" in c:
                self.wait_probe(proc, "startupProbe")
        for proc in list(self.procs):
            if proc.alive() and "readinessProbe" in proc.container:
                self.wait_probe(proc, "readinessProbe", max_wait=ready_timeout)
        for proc in self.procs:
            if not proc.sidecar and proc.container in self.spec.get("initContainers", []):
                continue
            if not proc.alive():
                raise PodError(f"container {proc.name} exited with {proc.popen.returncode}:\n{log_tail(proc.log)}")

    def running(self, name: str) -> Proc:
        for p in self.procs:
            if p.name == name and p.popen.poll() is None:
                return p
        raise PodError(f"container {name} is not running")

    def _pre_stop(self, proc: Proc) -> None:
        hook = (proc.container.get("lifecycle") or {}).get("preStop")
        if not hook:
            return
        if "sleep" in hook:
            time.sleep(int(hook["sleep"]["seconds"]))
        elif "exec" in hook:
            subprocess.run(
                [self.rewrite(a, proc.container) for a in hook["exec"]["command"]],
                env=self._env(proc.container),
                capture_output=True,
                timeout=30,
            )
        elif "httpGet" in hook:
            self.probe_once(proc.container, {"httpGet": hook["httpGet"]})

    def _terminate(self, procs: list[Proc], deadline: float) -> None:
        for p in procs:
            if p.alive():
                p.term_at = time.monotonic()
                p.popen.send_signal(signal.SIGTERM)
        for p in procs:
            remaining = deadline - time.monotonic()
            try:
                p.popen.wait(timeout=max(remaining, 0.01))
            except subprocess.TimeoutExpired:
                p.killed = True
                p.popen.kill()
                p.popen.wait()
            p.alive()

    def stop(self, between: Callable[[], None] | None = None) -> dict[str, Any]:
        """Kubernetes' order: the main containers (preStop, then SIGTERM), and
        when they have exited, the sidecars in reverse order of declaration,
        within one terminationGracePeriodSeconds. `between` runs after the
        main containers are gone and before the sidecars are signalled."""
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        t0 = time.monotonic()
        deadline = t0 + grace
        mains = [p for p in self.procs if not p.sidecar and p.container in self.spec["containers"]]
        for p in mains:
            self._pre_stop(p)
        self._terminate(mains, deadline)
        between_error: BaseException | None = None
        if between is not None:
            try:
                between()
            except BaseException as e:  # noqa: BLE001 - report after a clean stop
                between_error = e
        sidecars = [p for p in self.procs if p.sidecar]
        for p in reversed(sidecars):
            self._pre_stop(p)
            self._terminate([p], deadline)
        self.shutdown = {
            "seconds": time.monotonic() - t0,
            "grace": grace,
            "order": [p.name for p in sorted(mains + sidecars, key=lambda p: p.exited_at or 0)],
            "exit": {p.name: p.popen.returncode for p in mains + sidecars},
            "killed": [p.name for p in mains + sidecars if p.killed],
        }
        if between_error is not None:
            raise between_error
        return self.shutdown

    def kill_all(self) -> None:
        """Last resort for a failed test: nothing may outlive it."""
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.kill()
                p.popen.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.popen.returncode}) ---\n{log_tail(p.log)}" for p in self.procs)
