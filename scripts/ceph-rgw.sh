#!/usr/bin/env bash
# A throw-away Ceph RADOS Gateway on 127.0.0.1 for statestore's real-server tests.
#
#   scripts/ceph-rgw.sh start   install Debian's radosgw packages if missing, start one monitor,
#                               one in-memory OSD and radosgw (about 13 s); print the endpoint
#   scripts/ceph-rgw.sh stop    stop the processes this script started (by PID), remove its data
#   scripts/ceph-rgw.sh test    start, run the S3 server tests (pytest -m s3_server) against it, stop
#   scripts/ceph-rgw.sh env     print the STATESTORE_TEST_S3_* variables for a running gateway
#
# Auth is off inside the cluster; the gateway itself checks S3 signatures for the user it creates.
# Everything binds to 127.0.0.1. Settings: RGW_DIR (default $TMPDIR/statestore-rgw), RGW_PORT (47480),
# RGW_MON_PORT (46300; the v1 port is +489), RGW_PYTHON (default .venv/bin/python, else python3).
set -euo pipefail

D=${RGW_DIR:-${TMPDIR:-/tmp}/statestore-rgw}
PORT=${RGW_PORT:-47480}
MON_V2=${RGW_MON_PORT:-46300}
MON_V1=$((MON_V2 + 489))
ACCESS_KEY=statestore-test
SECRET_KEY=statestore-test-secret
ENDPOINT=http://127.0.0.1:$PORT
PACKAGES=(radosgw ceph-mon ceph-osd ceph-common uuid-runtime curl bc)

say() { echo "ceph-rgw: $*" >&2; }
elapsed() { echo "$(date +%s.%N) - $T0" | bc; }

install_packages() {
  command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null \
    && command -v uuidgen >/dev/null && command -v curl >/dev/null && command -v bc >/dev/null && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  say "installing ${PACKAGES[*]} from Debian"
  "${sudo[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

print_env() {
  echo "STATESTORE_TEST_S3_ENDPOINT=$ENDPOINT"
  echo "STATESTORE_TEST_S3_ACCESS_KEY_ID=$ACCESS_KEY"
  echo "STATESTORE_TEST_S3_SECRET_ACCESS_KEY=$SECRET_KEY"
  echo "STATESTORE_TEST_S3_NAME=ceph-rgw"
}

start() {
  if [ -f "$D/pids" ]; then
    local p alive=0
    for p in $(cat "$D/pids"); do kill -0 "$p" 2>/dev/null && alive=1; done
    if [ "$alive" = 1 ]; then
      say "already running ($D/pids names live processes); '$0 stop' first"
      exit 1
    fi
    say "removing the remains of a gateway that is no longer running"
    rm -rf "$D"
  fi
  install_packages
  T0=$(date +%s.%N)
  rm -rf "$D"
  mkdir -p "$D"/{mon.a,osd.0,rgw,run,log}
  local fsid conf
  fsid=$(uuidgen)
  conf=$D/ceph.conf
  cat >"$conf" <<CONF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv4 = true
ms_bind_ipv6 = false
ms_bind_port_min = $((MON_V2 + 500))
ms_bind_port_max = $((MON_V2 + 699))
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
auth_supported = none
# with auth none, radosgw loops on "get_initial_auth_request returned -13" unless every mode is crc
ms_mon_client_mode = crc
ms_client_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
ms_cluster_mode = crc
ms_service_mode = crc
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
run_dir = $D/run
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
keyring = $D/keyring
mon_data = $D/\$name
osd_data = $D/\$name
osd_objectstore = memstore
memstore_device_bytes = 2147483648
osd_class_dir = /usr/lib/$(uname -m)-linux-gnu/rados-classes
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $D/rgw
rgw_dns_name = localhost
rgw_enable_usage_log = false
log_file = $D/log/rgw.log
CONF
  export CEPH_CONF=$conf
  # mkfs wants a keyring even with auth none
  ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" "$D/monmap" >/dev/null
  ceph-mon -i a --mkfs --monmap "$D/monmap" --keyring "$D/keyring"
  ceph-mon -i a -f >"$D/log/mon.out" 2>&1 &
  echo $! >>"$D/pids"
  wait_for "monitor" 60 ceph --connect-timeout 5 mon stat

  local uuid id
  uuid=$(uuidgen)
  id=$(ceph osd new "$uuid")
  ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" >"$D/log/osd-mkfs.out" 2>&1
  ceph-osd -i "$id" -f >"$D/log/osd.out" 2>&1 &
  echo $! >>"$D/pids"
  wait_for "OSD" 120 sh -c "ceph osd dump 2>/dev/null | grep -q '^osd.$id up'"

  radosgw -n client.rgw -f >"$D/log/rgw.out" 2>&1 &
  echo $! >>"$D/pids"
  wait_for "radosgw" 240 curl -s -o /dev/null "$ENDPOINT/"
  radosgw-admin -n client.admin user create --uid=statestore-test --display-name=statestore-test \
    --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >"$D/log/user.json" 2>&1
  say "ready after $(elapsed) s at $ENDPOINT"
  print_env
}

wait_for() {
  local what=$1 tries=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    if "$@" >/dev/null 2>&1; then
      say "$what up after $(elapsed) s"
      return 0
    fi
    sleep 0.5
  done
  say "$what did not come up; logs in $D/log"
  stop
  exit 1
}

stop() {
  [ -f "$D/pids" ] || return 0
  for p in $(tac "$D/pids"); do
    kill -0 "$p" 2>/dev/null || continue
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$D"
  say "stopped"
}

run_tests() {
  cd "$(dirname "$0")/.."
  local py=${RGW_PYTHON:-.venv/bin/python}
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
