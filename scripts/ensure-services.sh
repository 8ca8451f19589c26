#!/usr/bin/env bash
# Makes sure RabbitMQ and PostgreSQL answer at RABBITMQ_URL / DATABASE_URL.
# Starts them when they don't: with docker compose where a Docker engine runs, else the
# locally installed servers; otherwise says exactly what is missing.
set -euo pipefail

# What this script settles on is written here for the Makefile's later steps to use.
SERVICES_ENV=var/services.env
RABBITMQ_URL_SET=${RABBITMQ_URL:+1}
DATABASE_URL_SET=${DATABASE_URL:+1}
RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/}
DATABASE_URL=${DATABASE_URL:-postgresql://localhost:5432/incidentflow}
PY=${PY:-python3}

hostport() {  # URL default_port -> "host port"
  "$PY" - "$1" "$2" <<'PYEOF'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "localhost", u.port or int(sys.argv[2]))
PYEOF
}

reachable() {  # host port
  "$PY" -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()" "$1" "$2" 2>/dev/null
}

wait_for() {  # name host port
  for _ in $(seq 1 60); do reachable "$2" "$3" && return 0; sleep 1; done
  echo "ERROR: $1 did not come up at $2:$3" >&2; return 1
}

read -r RMQ_HOST RMQ_PORT < <(hostport "$RABBITMQ_URL" 5672)
read -r PG_HOST PG_PORT < <(hostport "$DATABASE_URL" 5432)

start_rabbitmq() {
  if docker info >/dev/null 2>&1; then
    docker compose -f deploy/compose.yaml up -d rabbitmq
    # The container refuses guest from outside; use the compose credentials unless told otherwise.
    [ -n "$RABBITMQ_URL_SET" ] || RABBITMQ_URL="amqp://incidentflow:incidentflow@localhost:$RMQ_PORT/"
  elif command -v rabbitmq-server >/dev/null 2>&1; then
    rabbitmq-server -detached
  else
    echo "ERROR: RabbitMQ is not reachable at $RMQ_HOST:$RMQ_PORT, and neither a Docker engine nor rabbitmq-server is available to start one. Set RABBITMQ_URL or install RabbitMQ." >&2
    exit 1
  fi
  wait_for RabbitMQ "$RMQ_HOST" "$RMQ_PORT"
}

start_postgres() {
  if docker info >/dev/null 2>&1; then
    docker compose -f deploy/compose.yaml up -d postgres
    [ -n "$DATABASE_URL_SET" ] || DATABASE_URL="postgresql://incidentflow:incidentflow@localhost:$PG_PORT/incidentflow"
  elif command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  else
    echo "ERROR: PostgreSQL is not reachable at $PG_HOST:$PG_PORT, and neither a Docker engine nor a local PostgreSQL cluster is available to start one. Set DATABASE_URL or install PostgreSQL." >&2
    exit 1
  fi
  wait_for PostgreSQL "$PG_HOST" "$PG_PORT"
}

reachable "$RMQ_HOST" "$RMQ_PORT" || start_rabbitmq
reachable "$PG_HOST" "$PG_PORT" || start_postgres

# The management UI for operators, where this machine's RabbitMQ is local and ours to change.
if [ "${ENABLE_MANAGEMENT:-1}" = 1 ] && command -v rabbitmq-plugins >/dev/null 2>&1 \
   && { [ "$RMQ_HOST" = localhost ] || [ "$RMQ_HOST" = 127.0.0.1 ]; }; then
  rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null 2>&1 || true
  # Enabling returns before the listener is up; provisioning and the tests need it.
  wait_for "RabbitMQ management" "$RMQ_HOST" 15672
fi
mkdir -p "$(dirname "$SERVICES_ENV")"
printf 'RABBITMQ_URL=%s\nDATABASE_URL=%s\n' "$RABBITMQ_URL" "$DATABASE_URL" > "$SERVICES_ENV"
echo "RabbitMQ at $RMQ_HOST:$RMQ_PORT and PostgreSQL at $PG_HOST:$PG_PORT are reachable"
