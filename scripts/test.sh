#!/usr/bin/env bash
# The whole check behind `make test` (and `make lint` with --lint-only).
#
# 1. ruff check, ruff format --check, mypy, lint-imports (the core and every plugin under
#    plugins/, found by scripts/lint_imports.py); the Dockerfile and the Helm chart
#    (scripts/check-ops.sh)
# 2. pytest on SQLite with the in-process broker (the suite also runs each first-party
#    plugin's own suite, plugins/*/tests: tests/plugins/test_jobs_and_example.py)
# 3. the same on PostgreSQL with Redis as the broker: always in CI (CI=true), where a
#    service that does not answer is a failure; elsewhere only when PostgreSQL answers.
#
# Steps 2 and 3 run at the same time, each in the background into its own log that is
# printed whole when that run ends; the SQLite run starts first, so it overlaps step 1 too.
# Chosen over pytest-xdist (-n 2 inside each run) on a 2-core machine: one run after the
# other took 11m10s (lint cached), the two at once 5m50s-7m15s, and xdist (tried from a
# throwaway install, --dist loadfile) 8m20s for the two runs while reporting 454 of 516
# results (schemathesis' per-operation results in tests/test_openapi.py were lost); xdist
# would also need a new dev dependency and one Redis database per worker (tests/test_jobs.py
# flushes database 15). The two runs share nothing: each makes its own database (a SQLite
# file, or nestpoint_test_<pid>), only the PostgreSQL run uses Redis, and the servers the
# tests start listen on free ports.
#
# Every step runs even when an earlier one fails; the summary lists the failures.
set -uo pipefail
cd "$(dirname "$0")/.."

uv=(uv)
command -v uv >/dev/null 2>&1 || uv=(python3 -m uv)
run=("${uv[@]}" run --no-sync)
TEST_REDIS_URL="${NESTPOINT_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
ci=false
[[ "${CI:-}" == "true" ]] && ci=true

failed=()
notes=()
started=$SECONDS

step() {  # step <name> <command...>
    local name=$1
    shift
    echo
    echo "==> $name"
    local t0=$SECONDS
    if "$@"; then
        echo "--- $name: ok ($((SECONDS - t0))s)"
    else
        echo "--- $name: FAILED ($((SECONDS - t0))s)"
        failed+=("$name")
    fi
}

# Steps in the background: each writes to its own log, printed as a whole when it ends.
logs=$(mktemp -d "${TMPDIR:-/tmp}/nestpoint-test.XXXXXX")

# Python's bytecode cache. Each pytest run starts some 50 more Python processes (the
# plugins' suites, `nestpoint serve`/`worker`/`scheduler`, a few commands), each importing
# the app: with no cache every one compiles SQLAlchemy, Litestar, Pydantic, Alembic and the
# app from source again (`import nestpoint.api.app`: 9 s of CPU instead of 4.5 s). uv
# installs the environment without .pyc files, and where PYTHONDONTWRITEBYTECODE is set
# (this CI machine sets it, as Docker images often do) none is ever written: there this
# check keeps a cache of its own for its processes, beside its logs (removed at the end;
# not under .venv/, where the tests' throwaway environments would pile up run after run).
if [[ -n "${PYTHONDONTWRITEBYTECODE:-}" ]]; then
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$logs/pycache}"
fi

declare -A bg_name=() bg_log=() bg_t0=()
bg_order=()  # the pids in the order the steps started, for the summary
declare -A bg_failed=()

cleanup() {
    local pid
    for pid in "${!bg_name[@]}"; do  # still running only when the script is interrupted
        kill -TERM "$pid" 2>/dev/null
    done
    rm -rf "$logs"
}
trap cleanup EXIT

start_step() {  # start_step <name> <command...>
    local name=$1
    shift
    local log="$logs/step-${#bg_order[@]}.log"
    echo
    echo "==> $name: started in the background (its output follows when it ends)"
    "$@" >"$log" 2>&1 </dev/null &
    bg_name[$!]=$name
    bg_log[$!]=$log
    bg_t0[$!]=$SECONDS
    bg_order+=("$!")
}

finish_steps() {  # wait for every background step; print each one's output when it ends
    local pid rc name
    while ((${#bg_name[@]})); do
        pid=
        wait -n -p pid "${!bg_name[@]}"
        rc=$?
        if [[ -z "${pid:-}" ]]; then  # no status to collect (never expected): count it as failed
            pid=${!bg_name[*]}
            pid=${pid%% *}
            rc=1
        fi
        name=${bg_name[$pid]}
        echo
        echo "==> $name"
        cat "${bg_log[$pid]}"
        if ((rc == 0)); then
            echo "--- $name: ok ($((SECONDS - bg_t0[$pid]))s)"
        else
            echo "--- $name: FAILED ($((SECONDS - bg_t0[$pid]))s)"
            bg_failed[$pid]=$name
        fi
        unset "bg_name[$pid]"
    done
    for pid in "${bg_order[@]}"; do  # failures in the order the steps started
        [[ -n "${bg_failed[$pid]:-}" ]] && failed+=("${bg_failed[$pid]}")
    done
    bg_order=()
}

# The settings come from the environment: keep a developer's own NESTPOINT_* URLs out of
# the tests (the test set-up makes its own databases).
clean_env=(env -u NESTPOINT_DATABASE_URL -u NESTPOINT_MIGRATION_DATABASE_URL -u NESTPOINT_REDIS_URL)

tests=true
[[ "${1:-}" == "--lint-only" ]] && tests=false

if $tests && $ci; then
    # The console's browser tests (tests/console/) drive Debian's chromium: in CI they fail
    # without it, so install it first (elsewhere they are skipped with a note).
    scripts/install-browser.sh || failed+=("chromium for the browser tests (scripts/install-browser.sh)")
fi

if $tests; then
    start_step "pytest on SQLite (in-process broker)" \
        "${clean_env[@]}" NESTPOINT_TEST_DATABASE=sqlite "${run[@]}" pytest

    postgres=false
    redis=false
    if $ci; then
        # In CI the PostgreSQL run is not optional: start the services, fail if they do not answer.
        if scripts/ensure-services.sh; then
            postgres=true
            redis=true
        else
            failed+=("services (PostgreSQL and Redis must answer in CI)")
        fi
    else
        scripts/ensure-services.sh postgres && postgres=true
        scripts/ensure-services.sh redis && redis=true
    fi

    if $postgres && $redis; then
        start_step "pytest on PostgreSQL (Redis broker, $TEST_REDIS_URL)" \
            "${clean_env[@]}" NESTPOINT_TEST_DATABASE=postgresql \
            NESTPOINT_REDIS_URL="$TEST_REDIS_URL" "${run[@]}" pytest
    elif $postgres; then
        start_step "pytest on PostgreSQL (in-process broker)" \
            "${clean_env[@]}" NESTPOINT_TEST_DATABASE=postgresql "${run[@]}" pytest
        notes+=("Redis does not answer on ${REDIS_HOST:-127.0.0.1}:${REDIS_PORT:-6379}: the PostgreSQL run used the in-process broker.")
    elif ! $ci; then
        notes+=("PostgreSQL does not answer on ${PG_HOST:-127.0.0.1}:${PG_PORT:-5432}: only the SQLite tests ran.")
        notes+=("CI runs them on PostgreSQL and Redis too (.ci/run); see README.md to run them here.")
    fi
fi

# While the tests run: the longer of the two runs is the whole check's time.
step "ruff check" "${run[@]}" ruff check .
step "ruff format --check" "${run[@]}" ruff format --check .
step "mypy" "${run[@]}" mypy
step "lint-imports (core and plugins)" "${run[@]}" python scripts/lint_imports.py
step "Dockerfile and Helm chart (hadolint, helm lint, kubernetes-validate)" scripts/check-ops.sh

if $tests; then
    finish_steps
fi

echo
for note in "${notes[@]}"; do
    echo "NOTE: $note"
done
if ((${#failed[@]})); then
    echo "FAILED ($((SECONDS - started))s):"
    printf '  - %s\n' "${failed[@]}"
    exit 1
fi
echo "All checks passed ($((SECONDS - started))s)."
