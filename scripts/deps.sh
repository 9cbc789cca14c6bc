#!/usr/bin/env bash
# Installs the system packages paymesh builds and tests with, when missing.
# Each check tests the effect a step needs, not a proxy of it:
#
#   protoc compiles a file that imports google/protobuf/descriptor.proto
#     (etcd-client's build)                     protobuf-compiler libprotobuf-dev
#   etcd serves and etcdctl talks to it (migration tests, `make run`)
#                                               etcd-server etcd-client
#   python3 can create a venv with pip (chart tests, bench)  python3-venv
#   openssl makes certificates (TLS tests)      openssl
#   curl fetches (run script, probes)           curl
#   promtool tests a rule file (chart alert tests, promtool check metrics)
#   and the prometheus server runs and accepts a 200ms scrape config
#     (ramp tests against a real Prometheus)    prometheus
#   mkfs.ext4 and e2fsck run, losetup and mount exist (the store's
#     read-only disk test)                      e2fsprogs mount
#   rustc is at least the workspace's rust-version
#
# Needs root and apt-get to install; otherwise it names the exact packages
# and exits non-zero when the build itself cannot go on.
#
# DEPS_CHECK_ONLY=1 only reports (exit 1 when anything is missing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# in_temp_dir FN ARGS...: runs FN with a fresh temp dir's path before ARGS,
# removes the dir, returns FN's status.
in_temp_dir() {
    local d rc
    d="$(mktemp -d)"
    "$1" "$d" "${@:2}"
    rc=$?
    rm -rf "$d"
    return $rc
}

# with_file NAME CONTENT CMD...: writes CONTENT (printf %b) to a temp file
# NAME, runs CMD with the file's path appended, cleans up, returns CMD's status.
with_file() {
    in_temp_dir file_probe "$@"
}
file_probe() {
    local d=$1 name=$2 content=$3
    shift 3
    printf '%b' "$content" >"$d/$name"
    "$@" "$d/$name" >/dev/null 2>&1
}

protoc_ok() {
    command -v protoc >/dev/null 2>&1 &&
        with_file probe.proto 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\nmessage M { google.protobuf.FileDescriptorProto f = 1; }\n' \
            protoc --proto_path=/ --descriptor_set_out=/dev/null
}
venv_ok() {
    in_temp_dir venv_probe
}
venv_probe() {
    python3 -m venv "$1/v" >/dev/null 2>&1 && "$1/v/bin/python" -m pip --version >/dev/null 2>&1
}
promtool_ok() {
    command -v promtool >/dev/null 2>&1 &&
        with_file rules.yaml 'groups:\n  - name: probe\n    rules:\n      - alert: Probe\n        expr: up == 0\n' \
            promtool check rules
}
prometheus_ok() {
    { command -v prometheus >/dev/null 2>&1 && prometheus --version >/dev/null 2>&1; } &&
        with_file prometheus.yml 'global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: paymesh\n    static_configs:\n      - targets: ["127.0.0.1:9901"]\n' \
            promtool check config
}

# check NAME... : run the named checks; fill `missing` (packages) and
# `required` (packages the build cannot do without).
missing=()
required=()
check() {
    protoc_ok || { missing+=(protobuf-compiler libprotobuf-dev); required+=(protobuf-compiler libprotobuf-dev); }
    { command -v etcd >/dev/null 2>&1 && etcd --version >/dev/null 2>&1; } || missing+=(etcd-server)
    { command -v etcdctl >/dev/null 2>&1 && etcdctl version >/dev/null 2>&1; } || missing+=(etcd-client)
    venv_ok || missing+=(python3-venv)
    { command -v openssl >/dev/null 2>&1 && openssl version >/dev/null 2>&1; } || missing+=(openssl)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    { mkfs.ext4 -V >/dev/null 2>&1 && e2fsck -V >/dev/null 2>&1; } || missing+=(e2fsprogs)
    { command -v losetup >/dev/null 2>&1 && command -v mount >/dev/null 2>&1; } || missing+=(mount)
    { promtool_ok && prometheus_ok; } || missing+=(prometheus)
}

rust_ok() {
    local want have
    want="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
    have="$(rustc --version 2>/dev/null | awk '{print $2}')"
    if [ -z "$have" ]; then
        echo "deps: no Rust toolchain (rustc) on PATH; install Rust $want or newer (rustup)" >&2
        return 1
    fi
    if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
        echo "deps: rustc $have is older than the workspace's rust-version $want" >&2
        return 1
    fi
}

rust_ok || exit 1
check
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "${DEPS_CHECK_ONLY:-0}" != 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    missing=()
    required=()
    check
    if [ ${#missing[@]} -ne 0 ]; then
        echo "deps: still missing after apt-get install: ${missing[*]}" >&2
        exit 1
    fi
    exit 0
fi

echo "deps: missing system packages: ${missing[*]}" >&2
echo "deps: install them as root: apt-get install --no-install-recommends ${missing[*]}" >&2
if [ ${#required[@]} -ne 0 ] || [ "${DEPS_CHECK_ONLY:-0}" = 1 ]; then
    exit 1
fi
echo "deps: the build can go on; the tests that need these will fail" >&2
