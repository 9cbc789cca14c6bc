"""The criterion micro-benchmarks (bench/benches/per_request.rs), run with
short timings, and their medians read back from target/criterion."""

import glob
import json
import os
import sys

import tools


def run(root, jobs, since):
    """Runs them (criterion's own output goes to stderr, so stdout stays
    the report) and returns {"benchmarks": [{id, median_ns, mean_ns}]}, only
    for results written after `since` (a time.time())."""
    crit = os.path.join(root, "target", "criterion")
    tools.run(["cargo", "bench", f"-j{jobs}", "-p", "paymesh-bench", "--bench", "per_request", "--",
               "--warm-up-time", "1", "--measurement-time", "3"], cwd=root, stdout=sys.stderr)
    out = []
    for bj in sorted(glob.glob(os.path.join(crit, "**", "new", "benchmark.json"), recursive=True)):
        try:
            with open(bj) as f:
                meta = json.load(f)
            with open(os.path.join(os.path.dirname(bj), "estimates.json")) as f:
                est = json.load(f)
        except (OSError, ValueError):
            continue
        if os.path.getmtime(bj) < since:
            continue  # left over from an older run
        out.append({"id": meta.get("full_id") or meta.get("title"), "median_ns": est["median"]["point_estimate"],
                    "mean_ns": est["mean"]["point_estimate"]})
    return {"benchmarks": out}
