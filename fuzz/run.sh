#!/usr/bin/env bash
# `make fuzz`: builds every target under honggfuzz (coverage-guided, stable
# Rust) and runs each for FUZZ_SECONDS (default 60), FUZZ_JOBS targets at a
# time (default 2, one fuzzing thread each). Prints per target the
# iterations, the coverage and the crashes, and exits non-zero on any crash.
#
#   FUZZ_SECONDS=600 FUZZ_TARGETS="request_headers app_bodies" make fuzz
#
# Installs what it needs when missing: Debian's binutils-dev and
# libunwind-dev (honggfuzz links them) and `cargo hfuzz` (crates.io
# `honggfuzz`, the version in Cargo.lock). The seed corpora are read from
# fuzz/corpus/<target>/ and never written: new inputs go to
# target/fuzz/<target>/corpus, crashes to target/fuzz/<target>/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-2}"
work="$root/target/fuzz"
all_targets=$(sed -n 's/^ *("\([a-z_]*\)", [a-z_]*),$/\1/p' "$here/src/lib.rs")
targets="${FUZZ_TARGETS:-$all_targets}"
[ -n "$targets" ] || { echo "fuzz: no targets found in fuzz/src/lib.rs" >&2; exit 1; }

# --- what honggfuzz needs, checked by its effect ---------------------------
libs_ok() {
    local d
    d="$(mktemp -d)"
    printf '#include <libunwind-ptrace.h>\nint main(void){return 0;}\n' >"$d/p.c"
    cc "$d/p.c" -o "$d/p" -lbfd -lunwind-ptrace -lunwind-generic >/dev/null 2>&1 && [ -e /usr/include/bfd.h ]
    local rc=$?
    rm -rf "$d"
    return $rc
}
if ! libs_ok; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz: installing binutils-dev libunwind-dev" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends binutils-dev libunwind-dev >/dev/null
        libs_ok || { echo "fuzz: binutils-dev/libunwind-dev installed but honggfuzz cannot link them" >&2; exit 1; }
    else
        echo "fuzz: missing Debian packages binutils-dev libunwind-dev (apt-get install binutils-dev libunwind-dev)" >&2
        exit 1
    fi
fi
want=$(awk '/^name = "honggfuzz"$/{getline; gsub(/[^0-9.]/, ""); print; exit}' "$root/Cargo.lock")
have=$(cargo hfuzz version 2>/dev/null | awk '{print $NF}' || true)
if [ "$have" != "$want" ]; then
    echo "fuzz: installing cargo hfuzz $want (crates.io honggfuzz)" >&2
    cargo install --locked --force honggfuzz --version "$want" -j"${JOBS:-2}" >&2
fi

# --- build once, instrumented -------------------------------------------------
# Its own target dir, without LTO: a quicker build of the same code.
mkdir -p "$work"
export CARGO_TARGET_DIR="$work/build"
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
export HFUZZ_BUILD_ARGS="-j${JOBS:-2}"
(cd "$here" && cargo hfuzz build >&2)

# --- run ----------------------------------------------------------------------
# The binaries directly, not `cargo hfuzz run`, which would rebuild first.
hfuzz="$CARGO_TARGET_DIR/honggfuzz"
bins="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
[ -x "$hfuzz" ] || { echo "fuzz: $hfuzz was not built by cargo hfuzz build" >&2; exit 1; }
run_one() {
    local t=$1 dir="$work/$1"
    rm -rf "$dir/crashes" && mkdir -p "$dir/corpus" "$dir/crashes"
    # -P: persistent mode (the targets loop in-process); -v: plain log
    # lines and a closing "Summary" line instead of the terminal UI.
    "$hfuzz" -P -v -n 1 --run_time "$seconds" --timeout 5 --rlimit_rss 2048 \
        -i "$here/corpus/$t" -o "$dir/corpus" -W "$dir/crashes" -- "$bins/$t" >"$dir/log" 2>&1 || true
    local summary crashes
    summary=$(grep -a 'Summary iterations' "$dir/log" | tail -1 || true)
    crashes=$(find "$dir/crashes" -name '*.fuzz' | wc -l)
    printf '%s\t%s\t%s\n' "$t" "$crashes" "${summary:-no summary: see $dir/log}" >"$dir/result"
}

pids=()
for t in $targets; do
    run_one "$t" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}"
        pids=("${pids[@]:1}")
    fi
done
wait

failed=0
printf '%-24s %12s %10s %9s %8s %s\n' target iterations exec/s new_units crashes coverage
for t in $targets; do
    IFS=$'\t' read -r name crashes summary <"$work/$t/result"
    field() { sed -n "s/.*$1:\([0-9]*\).*/\1/p" <<<"$summary"; }
    printf '%-24s %12s %10s %9s %8s %s\n' "$name" "$(field iterations)" "$(field speed)" "$(field new_units_added)" \
        "$crashes" "guards $(field guard_nb), branch $(field branch_coverage_percent)%"
    if [ "$crashes" != 0 ] || ! grep -q 'Summary iterations' "$work/$t/log"; then
        failed=1
        echo "fuzz: $t: $crashes crash file(s) in $work/$t/crashes; log $work/$t/log" >&2
        find "$work/$t/crashes" -name '*.fuzz' | head -3 >&2
    fi
done
exit $failed
