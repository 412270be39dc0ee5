#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the local services (Azurite,
# fake-gcs-server; S3 runs in-process), then runs every test of the workspace.
# Tests start their own services on free loopback ports and stop them when done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-services.sh
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
cargo test --workspace --all-targets "$@"
