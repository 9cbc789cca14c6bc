"""The plain manifests under k8s/: built with kustomize, valid for Kubernetes,
their references resolve, the base pod is the chart's pod, and what the
containers would run (the sidecar config, the ramp Job's command line) is
accepted by the real binaries."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

import helpers
from helpers import K8S
from podrun import Pod, log_tail, service_targets

KUSTOMIZATIONS = ("base", "overlays/dev", "examples/migration-ramp")


def kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def build(path: str) -> list[dict]:
    cmd = kustomize_cmd()
    if cmd is None:
        pytest.skip(
            "neither kustomize nor kubectl is installed: only the plain files are validated "
            "(test_plain_files_are_valid)"
        )
    done = subprocess.run([*cmd, str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def kustomization(path: str) -> dict:
    with open(K8S / path / "kustomization.yaml") as f:
        return yaml.safe_load(f)


def strip_hash(name: str) -> str:
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def find(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
    return found[0]


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_plain_files_are_valid(path):
    """Every file a kustomization lists is valid on its own (no kustomize needed)."""
    k = kustomization(path)
    count = 0
    for res in k.get("resources", []):
        file = K8S / path / res
        if file.is_dir():
            continue
        with open(file) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    doc.setdefault("metadata", {}).setdefault("namespace", k.get("namespace", "default"))
                    helpers.validate_object(doc)
                    count += 1
    for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        for file in gen.get("files", []):
            with open(K8S / path / file.split("=")[-1]) as f:
                assert isinstance(yaml.safe_load(f), dict), file
    assert count or k.get("configMapGenerator") or k.get("secretGenerator")


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomize_build_is_valid(path):
    objs = build(path)
    assert objs
    assert helpers.validate_all(objs) == len(objs)


def test_dev_overlay_references_resolve():
    objs = build("overlays/dev") + build("examples/migration-ramp")
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {"paymesh-dev"}
    workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    for w in workloads:
        spec = helpers.pod_spec(w)
        if "serviceAccountName" in spec:
            assert ("ServiceAccount", spec["serviceAccountName"]) in names, w["metadata"]["name"]
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names
            if "secret" in v:
                assert ("Secret", v["secret"]["secretName"]) in names
        for c in helpers.all_containers(spec):
            assert c["image"] in ("paymesh/paymesh:dev", "quay.io/coreos/etcd:v3.5.21"), c["image"]
    for svc in (o for o in objs if o["kind"] == "Service"):
        sel = svc["spec"]["selector"]
        assert any(sel.items() <= w["spec"]["template"]["metadata"]["labels"].items() for w in workloads), svc
    targets = service_targets(objs)
    # What the containers dial is a Service of this build.
    deployment = find(objs, "Deployment", "paymesh")
    cm = find(
        objs,
        "ConfigMap",
        next(v["configMap"]["name"] for v in helpers.pod_spec(deployment)["volumes"] if "configMap" in v),
    )
    cfg = yaml.safe_load(cm["data"]["sidecar.yaml"])
    dials = list(cfg["migration"]["etcd_endpoints"])
    dials += [
        e["value"]
        for e in helpers.pod_spec(deployment)["containers"][0]["env"]
        if e["name"] == "PAYMESH_APP_ORCHESTRATOR"
    ]
    job_args = helpers.pod_spec(find(objs, "Job", "paymesh-ramp-charge"))["containers"][0]["args"]
    dials += [job_args[job_args.index("--etcd") + 1], job_args[job_args.index("--sidecars") + 1]]
    for url in dials:
        m = re.fullmatch(r"http://([a-z0-9-]+):([0-9]+)", url)
        assert m and (m.group(1), int(m.group(2))) in targets, f"{url} is no Service port of the dev overlay"


def test_dev_etcd_is_a_three_member_cluster():
    objs = build("overlays/dev")
    sts = find(objs, "StatefulSet", "etcd")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "Parallel"
    headless = find(objs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    members = dict(m.split("=", 1) for m in env["ETCD_INITIAL_CLUSTER"].split(","))
    svc = sts["spec"]["serviceName"]
    assert members == {f"etcd-{i}": f"http://etcd-{i}.{svc}.$(POD_NAMESPACE).svc:2380" for i in range(3)}
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://$(POD_NAME).{svc}.$(POD_NAMESPACE).svc:2380"
    assert find(objs, "PodDisruptionBudget", "etcd")["spec"]["minAvailable"] == 2


def normalise_pod(spec: dict) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(spec))
    for v in spec.get("volumes", []):
        if "configMap" in v:
            v["configMap"]["name"] = strip_hash(v["configMap"]["name"])
        if "secret" in v:
            v["secret"]["secretName"] = strip_hash(v["secret"]["secretName"])
    for c in helpers.all_containers(spec):
        c["image"] = "IMAGE"
    return spec


def load_plain(path: str) -> list[dict]:
    with open(K8S / path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_base_pod_is_the_charts_pod():
    """k8s/base is the chart with default values: same pod, Service, PDB and
    sidecar YAML (names and labels aside). Read from the plain files, so this
    holds with or without kustomize."""
    chart = helpers.render({}, name="paymesh")
    ours, theirs = load_plain("base/deployment.yaml")[0], chart.get("Deployment", "paymesh")
    assert normalise_pod(helpers.pod_spec(ours)) == normalise_pod(helpers.pod_spec(theirs))
    for key in ("replicas", "strategy", "revisionHistoryLimit"):
        assert ours["spec"][key] == theirs["spec"][key], key
    for kind, file in (("Service", "base/service.yaml"), ("PodDisruptionBudget", "base/pdb.yaml")):
        a, b = load_plain(file)[0]["spec"], chart.get(kind, "paymesh")["spec"]
        for s in (a, b):
            (s.get("selector", {}).get("matchLabels") or s.get("selector", {})).pop("app.kubernetes.io/instance", None)
        assert a == b, kind
    base_cfg = (K8S / "base" / "sidecar.yaml").read_text()
    chart_cfg = chart.get("ConfigMap", "paymesh-sidecar")["data"]["sidecar.yaml"]
    assert yaml.safe_load(base_cfg) == yaml.safe_load(chart_cfg)
    base_sa = load_plain("base/serviceaccount.yaml")[0]
    assert base_sa["automountServiceAccountToken"] is False
    assert helpers.pod_spec(ours)["serviceAccountName"] == base_sa["metadata"]["name"]


@pytest.mark.binaries
def test_dev_overlay_config_passes_check_config(tmp_path):
    helpers.require_binary("paymesh-sidecar")
    objs = build("overlays/dev")
    deployment = find(objs, "Deployment", "paymesh")
    pod = Pod(deployment, objs, tmp_path, helpers.bin_dir(), "paymesh-dev")
    pod.materialise_volumes()
    init = helpers.pod_spec(deployment)["initContainers"][0]
    rc = pod.run_to_completion(init)
    assert rc == 0, log_tail(tmp_path / "logs" / f"{init['name']}.log")
    assert yaml.safe_load((pod.volume_dirs["config"] / "sidecar.yaml").read_text())["clients"][0]["id"] == "demo"


@pytest.mark.binaries
def test_ramp_job_command_line_is_accepted(tmp_path):
    """paymeshctl parses the Job's arguments: it gets as far as dialling etcd
    (unreachable here) instead of stopping on a usage error."""
    helpers.require_binary("paymeshctl")
    objs = build("examples/migration-ramp")
    job = find(objs, "Job", "paymesh-ramp-charge")
    # Cluster names do not resolve here; point etcd and the sidecars at a
    # closed local port so that the failure is quick and certain.
    closed = helpers.free_port()
    spec = helpers.pod_spec(job)
    c = spec["containers"][0]
    c["args"] = [re.sub(r"^http://[a-z0-9-]+:[0-9]+$", f"http://127.0.0.1:{closed}", a) for a in c["args"]]
    pod = Pod(job, objs, tmp_path, helpers.bin_dir(), "paymesh-dev")
    pod.materialise_volumes()
    env = pod._env(c)
    argv = pod.argv(c, env)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        out = done.stdout + done.stderr
        assert done.returncode != 2 and "Usage:" not in out and "unexpected argument" not in out, out
        assert done.returncode != 0, f"a ramp with etcd unreachable must fail:\n{out}"
    except subprocess.TimeoutExpired:
        pass  # still trying to reach etcd: the arguments were accepted
