#!/usr/bin/env bash
# A throw-away LocalStack S3 on 127.0.0.1 for statestore's real-server tests, without Docker.
#
#   scripts/localstack.sh start   install LocalStack's runtime (the localstack-core package) into its own venv if
#                                 missing, start it with only S3 (about 3 s); print the endpoint
#   scripts/localstack.sh stop    stop the process this script started (by PID), remove its data
#   scripts/localstack.sh test    start, run the S3 server tests (pytest -m s3_server) against it, stop
#   scripts/localstack.sh env     print the STATESTORE_TEST_S3_* variables for a running server
#
# LocalStack runs "on the host": `python -m localstack.runtime.main`, what its Docker image runs inside the
# container. Its code needs Python >= 3.12 (its package metadata says 3.10, but it uses 3.12 syntax): LS_PYTHON
# names one, else the first of python3.13, python3.12 and pyenv's 3.12/3.13 that runs. Objects live in memory and
# under LS_DIR; nothing is downloaded at run time (no DNS server, no certificate download, no analytics).
# Settings: LS_DIR (default $TMPDIR/statestore-localstack), LS_PORT (45660), LS_VENV (default .venv-localstack in
# the repository), LS_PYTHON, LS_TEST_PYTHON (runs pytest; default .venv/bin/python, else python3).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${LS_DIR:-${TMPDIR:-/tmp}/statestore-localstack}
PORT=${LS_PORT:-45660}
VENV=${LS_VENV:-$ROOT/.venv-localstack}
ENDPOINT=http://127.0.0.1:$PORT
# LocalStack accepts any key pair (it does not check signatures); these are the ones the tests look for in output.
ACCESS_KEY=statestore-test
SECRET_KEY=statestore-test-secret
# What its S3 needs, and the versions it was measured with (2026-12). The [runtime] extra would add every other
# service's dependencies (about 500 MB); [base-runtime] and moto-ext (its S3 code imports moto.core) are enough.
REQUIREMENTS=(
  'localstack-core[base-runtime]==2026.3.0'
  'moto-ext==5.1.54'
  'cbor2<6'                           # 6.x dropped cbor2._decoder, which localstack imports
  'pyopenssl>=25,<26'                 # 26 dropped X509.add_extensions, used for its self-signed certificate
  'cryptography>=45.0.7,<47'          # what pyopenssl 25 accepts
  'service_identity'                  # twisted's TLS module, which its gateway imports, needs it
)

say() { echo "localstack: $*" >&2; }

find_python() {
  local c
  for c in "${LS_PYTHON:-}" python3.13 python3.12 \
    "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  say "needs Python >= 3.12 (set LS_PYTHON); none found"
  return 1
}

install_localstack() {
  local want
  want=$(printf '%s\n' "${REQUIREMENTS[@]}")
  [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/statestore-requirements.txt" 2>/dev/null)" = "$want" ] && return 0
  local py
  py=$(find_python)
  say "installing localstack-core into $VENV (with $py; about 30 s)"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${REQUIREMENTS[@]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$VENV/bin/python" -c 'import localstack.aws.components, OpenSSL.crypto, service_identity'
  echo "$want" >"$VENV/statestore-requirements.txt"
}

print_env() {
  echo "STATESTORE_TEST_S3_ENDPOINT=$ENDPOINT"
  echo "STATESTORE_TEST_S3_ACCESS_KEY_ID=$ACCESS_KEY"
  echo "STATESTORE_TEST_S3_SECRET_ACCESS_KEY=$SECRET_KEY"
  echo "STATESTORE_TEST_S3_NAME=localstack"
}

start() {
  if [ -f "$D/pid" ]; then
    if kill -0 "$(cat "$D/pid")" 2>/dev/null; then
      say "already running (PID $(cat "$D/pid")); '$0 stop' first"
      exit 1
    fi
    say "removing the remains of a server that is no longer running"
    rm -rf "$D"
  fi
  install_localstack
  local t0
  t0=$(date +%s%N)
  rm -rf "$D"
  mkdir -p "$D/fs"
  (
    cd "$D"
    export GATEWAY_LISTEN=127.0.0.1:$PORT SERVICES=s3 EAGER_SERVICE_LOADING=1 FILESYSTEM_ROOT=$D/fs \
      DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 LOCALSTACK_TELEMETRY=0 TMPDIR=$D/fs
    exec "$VENV/bin/python" -m localstack.runtime.main >"$D/localstack.log" 2>&1
  ) &
  echo $! >"$D/pid"
  for _ in $(seq 1 240); do
    if grep -q '^Ready\.' "$D/localstack.log" 2>/dev/null; then
      say "ready after $(((($(date +%s%N) - t0) / 1000000))) ms at $ENDPOINT"
      print_env
      return 0
    fi
    kill -0 "$(cat "$D/pid")" 2>/dev/null || break
    sleep 0.25
  done
  say "did not come up; the last lines of $D/localstack.log:"
  tail -20 "$D/localstack.log" >&2 || true
  stop
  exit 1
}

stop() {
  [ -f "$D/pid" ] || return 0
  local p
  p=$(cat "$D/pid")
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -rf "$D"
  say "stopped"
}

run_tests() {
  cd "$ROOT"
  local py=${LS_TEST_PYTHON:-.venv/bin/python}
  [ -x "$py" ] || py=python3
  start >/dev/null
  trap stop EXIT
  # shellcheck disable=SC2046
  env $(print_env) STATESTORE_TEST_S3_CLIENT="${STATESTORE_TEST_S3_CLIENT:-both}" "$py" -m pytest -m s3_server "$@"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  test) shift; run_tests "$@" ;;
  *) echo "usage: $0 start|stop|test [pytest args]|env" >&2; exit 2 ;;
esac
