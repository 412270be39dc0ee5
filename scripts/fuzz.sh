#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) and runs each for a fixed number of inputs from its seeds,
# with a fixed seed so a run is repeatable. A crash, a panic the reader does not turn into an
# error, a leak of memory past the limit: non-zero exit, the input saved under fuzz/artifacts/.
#   bash scripts/fuzz.sh            # the short run CI does: 2,000,000 inputs or 120 s a target
#   RUNS=50000000 SECONDS_EACH=0 bash scripts/fuzz.sh    # a long run (0: no time bound)
# The time bound keeps CI's run short whatever the inputs cost: the same seed explores other
# paths once the code changes, and one build ran 38,000 inputs a second where the next ran 635.
# Needs only the stable toolchain: targets are built without a sanitizer (`-s none`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-2000000}
SECONDS_EACH=${SECONDS_EACH:-120}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi
cd fuzz
cargo fuzz build -s none --release
for target in location manifest; do
    corpus=$(mktemp -d)
    [ -d "seeds/$target" ] && cp "seeds/$target"/* "$corpus"/
    echo "fuzz $target: $RUNS inputs"
    # A crafted Parquet page header can claim up to 2 GiB, which the reader allocates before it
    # finds the page short: the limit allows it (shards are read only after their SHA-256 matched).
    if ! cargo fuzz run -s none --release "$target" "$corpus" -- -seed=1 -runs="$RUNS" -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len=4096 \
        >"$corpus.log" 2>&1; then
        grep -v '^#' "$corpus.log" | tail -40
        exit 1
    fi
    tail -1 "$corpus.log"
    rm -rf "$corpus" "$corpus.log"
done
