#!/usr/bin/env bash
# Makes sure RabbitMQ and PostgreSQL answer, and writes where to var/services.env for the
# Makefile's later steps:
# - RABBITMQ_URL and DATABASE_URL set: those servers, as given (they must answer);
# - else a Docker engine: the servers of deploy/compose.yaml;
# - else the project's own servers from scripts/servers.sh (the versions the deploy files
#   name, in a chroot on ports of their own), provisioned the first time. The machine's own
#   RabbitMQ and PostgreSQL, whatever their versions, are left alone.
set -euo pipefail

SERVICES_ENV=var/services.env
PY=${PY:-python3}
SERVERS_CTL=

reachable() {  # URL default_port
  "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null
import socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
socket.create_connection((u.hostname or "localhost", u.port or int(sys.argv[2])), 2).close()
PYEOF
}

wait_for() {  # name URL default_port
  for _ in $(seq 1 60); do reachable "$2" "$3" && return 0; sleep 1; done
  echo "ERROR: $1 does not answer at $2" >&2; return 1
}

if [ -n "${RABBITMQ_URL:-}" ] && [ -n "${DATABASE_URL:-}" ]; then
  wait_for RabbitMQ "$RABBITMQ_URL" 5672
  wait_for PostgreSQL "$DATABASE_URL" 5432
elif docker info >/dev/null 2>&1; then
  docker compose -f deploy/compose.yaml up -d rabbitmq postgres
  # The containers refuse guest from outside; the compose credentials instead.
  RABBITMQ_URL=amqp://incidentflow:incidentflow@localhost:5672/
  RABBITMQ_MANAGEMENT_URL=http://incidentflow:incidentflow@localhost:15672/
  DATABASE_URL=postgresql://incidentflow:incidentflow@localhost:5432/incidentflow
  wait_for RabbitMQ "$RABBITMQ_URL" 5672
  wait_for "RabbitMQ management" "$RABBITMQ_MANAGEMENT_URL" 15672
  wait_for PostgreSQL "$DATABASE_URL" 5432
else
  ./scripts/servers.sh start
  eval "$(./scripts/servers.sh env)"
  SERVERS_CTL=$PWD/scripts/servers.sh
fi

mkdir -p "$(dirname "$SERVICES_ENV")"
{
  echo "RABBITMQ_URL=$RABBITMQ_URL"
  echo "DATABASE_URL=$DATABASE_URL"
  [ -z "${RABBITMQ_MANAGEMENT_URL:-}" ] || echo "RABBITMQ_MANAGEMENT_URL=$RABBITMQ_MANAGEMENT_URL"
  [ -z "$SERVERS_CTL" ] || echo "INCIDENTFLOW_SERVERS_CTL=$SERVERS_CTL"
} >"$SERVICES_ENV"
echo "RabbitMQ at $RABBITMQ_URL and PostgreSQL at $DATABASE_URL answer (var/services.env)"
