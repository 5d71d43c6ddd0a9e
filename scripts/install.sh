#!/usr/bin/env bash
# Install uv if it is missing, then the project, its plugins and dev tools into .venv.
# Needs only Python 3.11+ on PATH (uv finds it; it never downloads an interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v uv >/dev/null 2>&1; then
    uv=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
    uv=(python3 -m uv)
else
    echo "==> installing uv with pip"
    # A system Python may refuse plain installs (PEP 668); a user install is the fallback.
    python3 -m pip install --quiet uv \
        || python3 -m pip install --quiet --user uv \
        || python3 -m pip install --quiet --user --break-system-packages uv
    uv=(python3 -m uv)
fi

# Certificates from the system store; never download a Python (also set in pyproject.toml,
# repeated here for older uv versions that do not read those settings).
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"

echo "==> installing the project into .venv ($("${uv[@]}" --version))"
if [[ -f uv.lock ]]; then
    "${uv[@]}" sync --frozen --all-packages
else
    "${uv[@]}" sync --all-packages
fi
