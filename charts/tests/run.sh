#!/usr/bin/env bash
# The chart and manifest tests (charts/paymesh, k8s/): creates or reuses a
# venv at target/chart-venv with the pinned tools of requirements.txt, then
# runs pytest. Arguments go to pytest (e.g. -k pod_run, -x, -m "not binaries").
#
# The paymesh binaries come from target/debug (PAYMESH_BIN_DIR overrides):
# build them first (cargo build --workspace --bins). A missing binary fails
# the tests that need it; nothing is skipped quietly.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/chart-venv"
requirements="$here/requirements.txt"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "chart tests: creating $venv" >&2
  mkdir -p "$root/target"
  if ! "$python" -m venv "$venv"; then
    echo "chart tests: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    rm -rf "$venv"
    exit 1
  fi
fi

# Reinstall only when requirements.txt changes.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "chart tests: installing $(grep -cv '^\s*\(#\|$\)' "$requirements") pinned packages into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

cd "$root"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" "$@"
