#!/usr/bin/env bash
# PostgreSQL and Redis for the test suite.
#
#   scripts/ensure-services.sh          in CI (CI=true): start whichever is down, wait until
#                                       both answer, fail if one does not; elsewhere: report
#   scripts/ensure-services.sh postgres exit 0 if PostgreSQL answers now (no waiting)
#   scripts/ensure-services.sh redis    exit 0 if Redis answers now (no waiting)
set -euo pipefail

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
WAIT_SECONDS="${WAIT_SECONDS:-30}"

postgres_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
    else  # no client tools: a TCP connection is the best we can check
        timeout 2 bash -c "exec 3<>/dev/tcp/$PG_HOST/$PG_PORT" 2>/dev/null
    fi
}

redis_up() {
    # Speak the protocol directly so no client tool is needed: PING answers +PONG.
    timeout 2 bash -c "
        exec 3<>/dev/tcp/$REDIS_HOST/$REDIS_PORT || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r reply <&3
        [[ \$reply == +PONG* ]]
    " 2>/dev/null
}

start_postgres() {
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
}

start_redis() {
    echo "==> starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

wait_for() {  # wait_for <name> <probe function>
    local name=$1 probe=$2 waited=0
    until "$probe"; do
        if ((waited >= WAIT_SECONDS)); then
            echo "error: $name does not answer after ${WAIT_SECONDS}s" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "$name is up"
}

case "${1:-}" in
    postgres) postgres_up; exit ;;
    redis) redis_up; exit ;;
    "") ;;
    *) echo "usage: $0 [postgres|redis]" >&2; exit 2 ;;
esac

if [[ "${CI:-}" == "true" ]]; then
    # A failed start is reported by the wait below, which fails the run.
    postgres_up || start_postgres || echo "warning: starting PostgreSQL failed" >&2
    redis_up || start_redis || echo "warning: starting Redis failed" >&2
    wait_for "PostgreSQL ($PG_HOST:$PG_PORT)" postgres_up
    wait_for "Redis ($REDIS_HOST:$REDIS_PORT)" redis_up
else
    postgres_up && echo "PostgreSQL ($PG_HOST:$PG_PORT) is up" \
        || echo "PostgreSQL ($PG_HOST:$PG_PORT) is down (CI=true make services starts it)"
    redis_up && echo "Redis ($REDIS_HOST:$REDIS_PORT) is up" \
        || echo "Redis ($REDIS_HOST:$REDIS_PORT) is down (CI=true make services starts it)"
fi
