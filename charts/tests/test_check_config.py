"""The sidecar configuration the chart renders is one the sidecar accepts:
the pod's own `config` init container (cat + `paymesh-sidecar --check-config`)
is run as it would run in the pod, for every value set."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import helpers
from helpers import NAMESPACE
from podrun import Pod, log_tail

pytestmark = pytest.mark.binaries


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    sidecar = helpers.require_binary("paymesh-sidecar")
    return subprocess.run([str(sidecar), "--check-config", str(path)], capture_output=True, text=True, timeout=30)


def test_check_config_accepts_a_minimal_config_and_names_an_unknown_key(tmp_path):
    """Guards the other checks: a sidecar that accepted anything would make
    them pass for nothing."""
    minimal = {
        "listen": "127.0.0.1:8080",
        "app": "127.0.0.1:8081",
        "clients": [{"id": "demo", "api_key_sha256": helpers.DEMO_KEY_SHA256}],
    }
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(minimal))
    done = check_config(good)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**minimal, "limits": {"max_inflight": 8, "max_inflite": 8}}))
    done = check_config(bad)
    assert done.returncode != 0, "an unknown key was accepted"
    assert "max_inflite" in done.stdout + done.stderr, done.stdout + done.stderr


def test_rendered_config_passes_check_config(rendered, value_set, tmp_path, tls_dir):
    helpers.require_binary("paymesh-sidecar")
    deployment = rendered.get("Deployment", helpers.fullname())
    pod = Pod(
        deployment,
        rendered.objects + helpers.operator_objects(value_set, tls_dir),
        tmp_path,
        helpers.bin_dir(),
        NAMESPACE,
    )
    pod.materialise_volumes()
    init = helpers.pod_spec(deployment)["initContainers"][0]
    assert init["name"] == "config"
    rc = pod.run_to_completion(init)
    assert rc == 0, f"the config init container failed ({rc}):\n{log_tail(tmp_path / 'logs' / 'config.log')}"
    assembled = pod.volume_dirs["config"] / "sidecar.yaml"
    cfg = yaml.safe_load(assembled.read_text())
    assert cfg["clients"], "the clients from the Secret were not appended"
    assert cfg["listen"] and cfg["app"]
    done = check_config(assembled)
    assert done.returncode == 0, done.stdout + done.stderr
