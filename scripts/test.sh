#!/usr/bin/env bash
# The whole check behind `make test` (and `make lint` with --lint-only).
#
# 1. ruff check, ruff format --check, mypy, lint-imports (the core and every plugin under
#    plugins/, found by scripts/lint_imports.py)
# 2. pytest on SQLite with the in-process broker (the suite also runs each first-party
#    plugin's own suite, plugins/*/tests: tests/plugins/test_jobs_and_example.py)
# 3. the same on PostgreSQL with Redis as the broker: always in CI (CI=true), where a
#    service that does not answer is a failure; elsewhere only when PostgreSQL answers.
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

# The settings come from the environment: keep a developer's own NESTPOINT_* URLs out of
# the tests (the test set-up makes its own databases).
clean_env=(env -u NESTPOINT_DATABASE_URL -u NESTPOINT_MIGRATION_DATABASE_URL -u NESTPOINT_REDIS_URL)

step "ruff check" "${run[@]}" ruff check .
step "ruff format --check" "${run[@]}" ruff format --check .
step "mypy" "${run[@]}" mypy
step "lint-imports (core and plugins)" "${run[@]}" python scripts/lint_imports.py

if [[ "${1:-}" != "--lint-only" ]]; then
    step "pytest on SQLite (in-process broker)" \
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
        step "pytest on PostgreSQL (Redis broker, $TEST_REDIS_URL)" \
            "${clean_env[@]}" NESTPOINT_TEST_DATABASE=postgresql \
            NESTPOINT_REDIS_URL="$TEST_REDIS_URL" "${run[@]}" pytest
    elif $postgres; then
        step "pytest on PostgreSQL (in-process broker)" \
            "${clean_env[@]}" NESTPOINT_TEST_DATABASE=postgresql "${run[@]}" pytest
        notes+=("Redis does not answer on ${REDIS_HOST:-127.0.0.1}:${REDIS_PORT:-6379}: the PostgreSQL run used the in-process broker.")
    elif ! $ci; then
        notes+=("PostgreSQL does not answer on ${PG_HOST:-127.0.0.1}:${PG_PORT:-5432}: only the SQLite tests ran.")
        notes+=("CI runs them on PostgreSQL and Redis too (.ci/run); see README.md to run them here.")
    fi
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
