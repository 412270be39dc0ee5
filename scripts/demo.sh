#!/usr/bin/env bash
# A first ferry job on local disk, nothing to install: builds ferry, makes a small tree of
# awkward files, then plan → copy → verify → status → manifest export, and prints each step;
# then ships the same source on a "disk" (a directory; real devices are separate mounts, one
# --to each) and ingests it elsewhere.
# Usage: scripts/demo.sh [WORKDIR]   (default: a new temp directory)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
FERRY=$PWD/target/release/ferry
WORK=${1:-$(mktemp -d -t ferry-demo.XXXXXX)}
mkdir -p "$WORK/source/photos/2024" "$WORK/source/docs/deep/er/still"
head -c $((40 * 1024 * 1024 + 1)) /dev/urandom > "$WORK/source/photos/2024/big video.mp4"
for i in $(seq 1 200); do echo "note $i" > "$WORK/source/docs/note-$i.txt"; done
printf 'crème brûlée' > "$WORK/source/docs/deep/er/still/café #1 + 50%.txt"
: > "$WORK/source/empty"
cd "$WORK"
set -x
"$FERRY" plan source destination --job job
"$FERRY" copy --job job --part-size 8MiB
"$FERRY" verify --job job
"$FERRY" status --job job
"$FERRY" manifest export --job job --format csv --output manifest.csv
set +x
diff -r source destination && echo "demo: destination is byte-identical to the source ($WORK)"

# Shipping a disk: what a Data Box Disk would make of the names (lint), the export, sha256sum
# on the disk, then the ingest on "the other side", compared.
mkdir -p disk1
set -x
"$FERRY" export source --job ship --layout databox-disk --container demo --check --to disk1
"$FERRY" export source --job ship --layout plain --to disk1
(cd disk1 && sha256sum -c --quiet SHA256SUMS)
"$FERRY" ingest --from disk1 landed --job landing
set +x
diff -r source landed && echo "demo: the shipped disks landed byte-identical ($WORK)"
