#!/usr/bin/env bash
# Make sure the test suite's PostgreSQL and Redis are up. Starts them when they
# are installed locally but not running; never installs anything.
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
# PGHOST/PGPORT are libpq's own names; SKINCARE_REDIS_PORT was REDIS_PORT (still read).
REDIS_PORT=${SKINCARE_REDIS_PORT:-${REDIS_PORT:-6379}}

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "Starting PostgreSQL"
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  fi
  for _ in $(seq 30); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
  pg_isready -q -h "$PGHOST" -p "$PGPORT" || { echo "PostgreSQL is not reachable on $PGHOST:$PGPORT" >&2; exit 1; }
fi

redis_ok() { (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ! redis_ok; then
  if command -v redis-server >/dev/null; then
    echo "Starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/skincare-redis.log"
  fi
  for _ in $(seq 30); do redis_ok && break; sleep 0.5; done
  redis_ok || { echo "Redis is not reachable on 127.0.0.1:$REDIS_PORT" >&2; exit 1; }
fi
