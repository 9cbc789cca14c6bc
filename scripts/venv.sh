#!/usr/bin/env bash
# Usage: scripts/venv.sh NAME REQUIREMENTS [PYTHON-CHECK]
#
# Creates or reuses the Python venv target/NAME with the pinned packages of
# REQUIREMENTS (a path from the repository root). Idempotent: reinstalls
# only when that file changes (a stamp holds its sha256), so `make test`
# runs it every time. PYTHON-CHECK, if given, is code the venv's python must
# run without error after an install (e.g. the imports a test needs), so a
# broken install is an error here, not in a test. Prints the venv's path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:?usage: scripts/venv.sh NAME REQUIREMENTS [PYTHON-CHECK]}"
requirements="$root/${2:?usage: scripts/venv.sh NAME REQUIREMENTS [PYTHON-CHECK]}"
check="${3:-}"
venv="$root/target/$name"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "$name: creating $venv" >&2
  mkdir -p "$root/target"
  if ! "$python" -m venv "$venv" || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "$name: '$python -m venv' failed or made a venv without pip" \
      "(on Debian: apt-get install python3-venv, or run scripts/deps.sh as root)" >&2
    rm -rf "$venv"
    exit 1
  fi
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "$name: installing $(grep -cv '^\s*\(#\|$\)' "$requirements") pinned packages into $venv" >&2
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  if [ -n "$check" ]; then
    "$venv/bin/python" -c "$check"
  fi
  echo "$want" >"$stamp"
fi
echo "$venv"
