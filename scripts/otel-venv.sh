#!/usr/bin/env bash
# Creates or reuses target/otel-venv, the Python venv of the system tests'
# OTLP receiver (tests/otlp/sink.py, on oteltest), with the pinned packages
# of tests/otlp/requirements.txt. Idempotent: reinstalls only when that file
# changes (a stamp holds its sha256), so `make test` runs it every time.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/otel-venv"
requirements="$root/tests/otlp/requirements.txt"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "otel venv: creating $venv" >&2
  mkdir -p "$root/target"
  if ! "$python" -m venv "$venv" || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "otel venv: '$python -m venv' failed or made a venv without pip" \
      "(on Debian: apt-get install python3-venv, or run scripts/deps.sh as root)" >&2
    rm -rf "$venv"
    exit 1
  fi
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "otel venv: installing $(grep -cv '^\s*\(#\|$\)' "$requirements") pinned packages into $venv" >&2
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  # The sink must import: a broken install is an error here, not in a test.
  "$venv/bin/python" -c 'import oteltest.sink, opentelemetry.proto.trace.v1.trace_pb2, grpc'
  echo "$want" >"$stamp"
fi
