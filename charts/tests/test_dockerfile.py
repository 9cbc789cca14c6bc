"""The Dockerfile cannot be built here (no container engine), so its promises
are checked against the workspace and the manifests: it builds and installs
exactly the five binaries the pods run, as the non-root user the pods expect,
on a base that has the shell the config init container needs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

import helpers
from helpers import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1:]


def test_multi_stage_build_to_a_small_non_root_runtime():
    builder, runtime = stages()
    assert builder.startswith("rust:") and " AS builder" in builder.splitlines()[0]
    assert "protobuf-compiler" in builder, "etcd-client needs protoc"
    assert "--locked" in builder and "--release" in builder
    base = runtime.splitlines()[0]
    assert re.match(r"debian:\$\{DEBIAN_RELEASE\}-slim", base), base
    assert re.search(r"^ARG DEBIAN_RELEASE=bookworm$", DOCKERFILE, re.MULTILINE)
    assert "COPY --from=builder /out/ /usr/local/bin/" in runtime
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.MULTILINE)
    assert user, "the runtime stage must switch to a numeric non-root user"
    chart = helpers.chart_defaults()["podSecurityContext"]
    assert (int(user.group(1)), int(user.group(2))) == (chart["runAsUser"], chart["runAsGroup"]) != (0, 0)


def test_builds_and_installs_the_five_binaries():
    builder = stages()[0]
    built = re.findall(r"--bin (\S+)", builder)
    installed = re.search(r"for bin in ([^;]+);", builder).group(1).split()
    assert sorted(built) == sorted(installed) == sorted(helpers.BINARIES)


def test_the_binaries_are_workspace_targets():
    cargo = shutil.which("cargo")
    assert cargo, "cargo is needed to read the workspace's targets"
    done = subprocess.run(
        [cargo, "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    bins = {t["name"] for p in json.loads(done.stdout)["packages"] for t in p["targets"] if "bin" in t["kind"]}
    missing = set(helpers.BINARIES) - bins
    assert not missing, f"the Dockerfile builds binaries the workspace does not have: {missing}"


def test_every_command_the_manifests_run_is_in_the_image(render_set):
    objects = list(render_set("everything").objects)
    for path in ("overlays/dev", "examples/migration-ramp"):
        for file in (REPO / "k8s" / path).glob("*.yaml"):
            if file.name != "kustomization.yaml":
                objects += [d for d in yaml.safe_load_all(file.read_text()) if d]
    for file in (REPO / "k8s" / "base").glob("deployment.yaml"):
        objects += [d for d in yaml.safe_load_all(file.read_text()) if d]
    commands = set()
    for o in objects:
        if o.get("kind") in ("Deployment", "StatefulSet", "Job"):
            for c in helpers.all_containers(helpers.pod_spec(o)):
                if c["image"].startswith("paymesh/"):
                    commands.add(c["command"][0])
    assert commands == set(helpers.BINARIES) | {"/bin/sh"}, commands


@pytest.mark.parametrize("pattern", [".git", "target", "charts", "k8s"])
def test_dockerignore_keeps_the_context_small(pattern):
    assert pattern in (REPO / ".dockerignore").read_text().split()
