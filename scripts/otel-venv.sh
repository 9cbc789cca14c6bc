#!/usr/bin/env bash
# Creates or reuses target/otel-venv, the Python venv of the system tests'
# OTLP receiver (tests/otlp/sink.py, on oteltest), with the pinned packages
# of tests/otlp/requirements.txt (scripts/venv.sh does the work).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/venv.sh" otel-venv tests/otlp/requirements.txt \
  'import oteltest.sink, opentelemetry.proto.trace.v1.trace_pb2, grpc' >/dev/null
