#!/usr/bin/env bash
# `make bench`: install what the benchmarks need, check the services, run bench/run.py.
#
#   bench/run.sh                 everything (HTTP benchmarks, then the batch benchmark)
#   bench/run.sh --quick         a short smoke run (5 s windows, 100,000 batch members)
#   bench/run.sh --skip-batch    only the HTTP benchmarks (see bench/run.py --help)
#
# Needs PostgreSQL (BENCH_PG_ADMIN_URL, default postgresql://root@127.0.0.1:5432/postgres, a
# superuser) and Redis on 127.0.0.1:6379 (database 14 is emptied). In CI (CI=true) the
# services are started when down, as for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {  # apt_install <package...>: Debian packages, as root or through sudo
    local sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    echo "==> installing $* (apt-get)"
    "${sudo[@]}" apt-get install -y --no-install-recommends "$@" >/dev/null \
        || { "${sudo[@]}" apt-get update >/dev/null && \
             "${sudo[@]}" apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

have_pg_tool() {
    command -v "$1" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
have_pg_tool psql || missing+=(postgresql-client)
# Debian ships pgbench with the server package of the same major version.
have_pg_tool pgbench || missing+=("postgresql-${BENCH_PG_MAJOR:-15}")
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi

scripts/ensure-services.sh
if ! scripts/ensure-services.sh postgres || ! scripts/ensure-services.sh redis; then
    echo "error: the benchmarks need PostgreSQL and Redis (CI=true make services starts them)" >&2
    exit 1
fi

exec ${UV_RUN:-uv run --no-sync} python bench/run.py "$@"
