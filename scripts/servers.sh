#!/usr/bin/env bash
# The project's own RabbitMQ and PostgreSQL: the versions deploy/compose.yaml names, run from a
# Debian chroot on ports of their own, beside whatever servers the machine already runs
# (docs/adr/0056-own-servers-in-a-chroot.md). Never touches the machine's own servers.
#
#   scripts/servers.sh start              provision when missing, then start both (idempotent)
#   scripts/servers.sh stop               stop both
#   scripts/servers.sh restart NAME       graceful restart of rabbitmq or postgres
#   scripts/servers.sh kill NAME          kill -9 every process of it, then start it again
#   scripts/servers.sh env                the URLs the project uses to reach them
#   scripts/servers.sh provision          build the chroot (debootstrap, then apt inside it)
#
# Needs root (chroot, mount) and debootstrap; the Debian mirror is the only network it uses.
set -euo pipefail

# Canonical: the servers' processes are told apart by their root, which /proc names so.
HOME_DIR=$(realpath -m "${INCIDENTFLOW_SERVERS_HOME:-/var/lib/incidentflow-servers}")
ROOT=$HOME_DIR/rootfs
SUITE=${INCIDENTFLOW_SERVERS_SUITE:-sid}
MIRROR=${INCIDENTFLOW_SERVERS_MIRROR:-http://deb.debian.org/debian}
# The majors the deploy files name; `start` refuses a chroot that holds other ones.
PG_MAJOR=18
RABBITMQ_SERIES=4.3
AMQP_PORT=${INCIDENTFLOW_RABBITMQ_PORT:-5673}
MANAGEMENT_PORT=${INCIDENTFLOW_RABBITMQ_MANAGEMENT_PORT:-15673}
DIST_PORT=$((AMQP_PORT + 20000))
EPMD_PORT=${INCIDENTFLOW_EPMD_PORT:-4370}
PG_PORT=${INCIDENTFLOW_POSTGRES_PORT:-5433}
PGDATA=/var/lib/postgresql/$PG_MAJOR/incidentflow
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
NODE=incidentflow@localhost

log() { echo "servers: $*" >&2; }

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# Every RabbitMQ command needs the same node, ports and epmd, so it finds this node and no other.
as_rabbitmq() {
  chroot --userspec=rabbitmq:rabbitmq "$ROOT" /usr/bin/env -i \
    PATH=/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/bin HOME=/var/lib/rabbitmq LANG=C.UTF-8 \
    RABBITMQ_NODENAME=$NODE RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$DIST_PORT \
    ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' "$@"
}

as_postgres() {
  chroot --userspec=postgres:postgres "$ROOT" /usr/bin/env -i \
    PATH=$PG_BIN:/usr/bin:/bin HOME=/var/lib/postgresql LANG=C.UTF-8 "$@"
}

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {  # name port seconds
  for _ in $(seq 1 "$3"); do reachable "$2" && return 0; sleep 1; done
  log "$1 did not answer on port $2 within $3 s"; return 1
}

mount_pseudo_filesystems() {
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mkdir -p "$ROOT/dev/shm"
  mountpoint -q "$ROOT/dev/shm" || mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm"
}

provision() {
  [ "$(id -u)" = 0 ] || { log "needs root (chroot and mount)"; exit 1; }
  "$(dirname "$0")/install-missing.sh" "the project's own servers" debootstrap=debootstrap
  local staging=$HOME_DIR/rootfs.partial
  release "$staging"
  mkdir -p "$HOME_DIR"
  log "debootstrap $SUITE into $staging"
  debootstrap --variant=minbase "$SUITE" "$staging" "$MIRROR" >"$HOME_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$HOME_DIR/debootstrap.log" >&2; exit 1; }
  # Nothing starts at install time: the servers are started by this script on its own ports.
  printf '#!/bin/sh\nexit 101\n' >"$staging/usr/sbin/policy-rc.d"
  chmod +x "$staging/usr/sbin/policy-rc.d"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$staging/etc/hosts"
  cp /etc/resolv.conf "$staging/etc/resolv.conf"
  mountpoint -q "$staging/proc" || mount -t proc proc "$staging/proc"
  log "installing rabbitmq-server and postgresql-$PG_MAJOR"
  # A mirror that serves a frozen copy of the suite answers with an expired Release file; the
  # packages are still checked against their signed hashes.
  echo 'Acquire::Check-Valid-Until "false";' >"$staging/etc/apt/apt.conf.d/99incidentflow"
  if ! chroot "$staging" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends \
             rabbitmq-server postgresql-$PG_MAJOR" >"$HOME_DIR/apt.log" 2>&1; then
    umount "$staging/proc"; tail -20 "$HOME_DIR/apt.log" >&2; exit 1
  fi
  umount "$staging/proc"
  configure "$staging"
  if [ -d "$ROOT" ]; then
    stop_rabbitmq; stop_postgres
    release "$ROOT"
  fi
  mv "$staging" "$ROOT"
  log "provisioned: $(installed_versions)"
}

# Unmounts what start mounted in a rootfs, then removes it; never crosses into a mount.
release() {  # rootfs
  local mount
  for mount in proc dev/shm; do
    if mountpoint -q "$1/$mount"; then umount "$1/$mount"; fi
  done
  rm -rf --one-file-system "$1"
}

configure() {  # rootfs
  local root=$1
  cat >"$root/etc/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MANAGEMENT_PORT
EOF
  echo '[rabbitmq_management].' >"$root/etc/rabbitmq/enabled_plugins"
  # The chroot's own rabbitmq user, whose id may differ from the host's.
  chroot "$root" chown rabbitmq:rabbitmq /etc/rabbitmq/enabled_plugins
}

installed_versions() {
  in_root dpkg-query -W -f '${Package} ${Version}\n' rabbitmq-server "postgresql-$PG_MAJOR" | tr '\n' ' '
}

check_versions() {
  local rabbitmq
  rabbitmq=$(in_root dpkg-query -W -f '${Version}' rabbitmq-server)
  case $rabbitmq in
    "$RABBITMQ_SERIES".*) ;;
    *) log "the chroot holds RabbitMQ $rabbitmq, not $RABBITMQ_SERIES: run $0 provision"; exit 1 ;;
  esac
  in_root test -x "$PG_BIN/postgres" \
    || { log "the chroot lacks PostgreSQL $PG_MAJOR: run $0 provision"; exit 1; }
}

start_rabbitmq() {
  if reachable "$AMQP_PORT"; then return 0; fi
  as_rabbitmq sh -c "setsid rabbitmq-server >/var/log/rabbitmq/incidentflow.out 2>&1 </dev/null &"
  wait_for_port RabbitMQ "$AMQP_PORT" 120
  wait_for_port "RabbitMQ management" "$MANAGEMENT_PORT" 60
}

start_postgres() {
  if reachable "$PG_PORT"; then return 0; fi
  if ! in_root test -s "$PGDATA/PG_VERSION"; then
    in_root install -d -o postgres -g postgres -m 700 "$PGDATA"
    as_postgres initdb -D "$PGDATA" -U postgres -A trust -E UTF8 --locale C.UTF-8 >/dev/null
  fi
  in_root install -d -o postgres -g postgres /var/run/postgresql
  as_postgres pg_ctl -D "$PGDATA" -l "$PGDATA/server.log" -w -t 120 \
    -o "-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=/var/run/postgresql" \
    start >/dev/null
  as_postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'incidentflow'" | grep -q 1 \
    || as_postgres createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres incidentflow
}

start() {
  [ -x "$ROOT/usr/sbin/rabbitmq-server" ] || provision
  check_versions
  mount_pseudo_filesystems
  start_rabbitmq
  start_postgres
}

stop_rabbitmq() {
  as_rabbitmq rabbitmqctl -q stop >/dev/null 2>&1 || true
  as_rabbitmq epmd -kill >/dev/null 2>&1 || true
}

stop_postgres() {
  in_root test -s "$PGDATA/postmaster.pid" && as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null || true
}

# Processes are told apart from the machine's own servers by their root directory.
pids_in_root() {  # pattern
  local pid
  for pid in $(pgrep -f "$1" || true); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$ROOT" ] && echo "$pid"
  done
  return 0
}

kill_hard() {  # name
  local pattern
  case $1 in
    rabbitmq) pattern='beam.smp|epmd|erl_child_setup|inet_gethost' ;;
    postgres) pattern='postgres' ;;
    *) log "kill: rabbitmq or postgres, not $1"; exit 2 ;;
  esac
  local pids
  pids=$(pids_in_root "$pattern")
  [ -n "$pids" ] || { log "no $1 process is running from $ROOT"; exit 1; }
  # A process of the snapshot may have ended meanwhile (backends come and go): not an error.
  kill -9 $pids 2>/dev/null || true
  # Gone from /proc, not only from pgrep: a killed postmaster's PID that still exists (an
  # unreaped zombie) makes the new one refuse to start.
  local pid
  for pid in $pids; do
    for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
  done
  "start_$1"
}

case ${1:-} in
  provision) provision ;;
  start) start ;;
  stop) stop_rabbitmq; stop_postgres ;;
  restart)
    case ${2:-} in
      rabbitmq) as_rabbitmq rabbitmqctl -q stop_app && as_rabbitmq rabbitmqctl -q start_app ;;
      postgres) stop_postgres && start_postgres ;;
      *) log "restart: rabbitmq or postgres"; exit 2 ;;
    esac ;;
  kill) kill_hard "${2:-}" ;;
  env)
    echo "RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
    echo "RABBITMQ_MANAGEMENT_URL=http://guest:guest@127.0.0.1:$MANAGEMENT_PORT/"
    echo "DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/incidentflow" ;;
  versions) installed_versions; echo ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
