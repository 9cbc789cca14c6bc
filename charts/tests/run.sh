#!/usr/bin/env bash
# The chart and manifest tests (charts/paymesh, k8s/): creates or reuses a
# venv at target/chart-venv with the pinned tools of requirements.txt
# (scripts/venv.sh), then runs pytest. Arguments go to pytest (e.g.
# -k pod_run, -x, -m "not binaries").
#
# The paymesh binaries come from target/debug (PAYMESH_BIN_DIR overrides):
# build them first (cargo build --workspace --bins). A missing binary fails
# the tests that need it; nothing is skipped quietly.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$("$root/scripts/venv.sh" chart-venv charts/tests/requirements.txt)"

cd "$root"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" "$@"
