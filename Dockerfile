# Nestpoint: one image for the API (`serve`, the default), `worker`, `scheduler` and
# `migrate`, with the first-party plugins delivery, consultations and classes.
#
#   docker build -t nestpoint:0.1.0 .
#   docker run --rm -v nestpoint-data:/var/lib/nestpoint nestpoint:0.1.0 migrate
#   docker run --rm -p 8000:8000 -v nestpoint-data:/var/lib/nestpoint nestpoint:0.1.0
#
# Without NESTPOINT_DATABASE_URL that is the embedded default (SQLite in the data folder and
# an in-process worker); production sets the variables of docs/configuration.md.
#
# The build stage builds the wheels and installs them, with the dependency versions of
# uv.lock (hash-checked), into /opt/nestpoint; the final stage holds only that environment.

# ---------------------------------------------------------------- build
FROM python:3.11-slim-bookworm AS build

# Byte-compiled at build time: the containers run with a read-only root file system.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .

# The core's wheel carries its migrations and example manifests (platform/nestpoint has
# symlinks to migrations/ and tenants/). nestpoint-example is a template, not shipped.
RUN pip install --no-cache-dir uv==0.13.9 \
    && set -- \
    && for package in nestpoint nestpoint-delivery nestpoint-consultations nestpoint-classes; do \
        uv build --wheel --package "$package" --out-dir /wheels && set -- "$@" --package "$package"; \
    done \
    && uv export --frozen --no-dev --no-emit-workspace "$@" --output-file /wheels/requirements.txt \
    && uv venv /opt/nestpoint --python /usr/local/bin/python3.11 \
    && uv pip install --python /opt/nestpoint/bin/python --require-hashes \
        --requirement /wheels/requirements.txt \
    && uv pip install --python /opt/nestpoint/bin/python --no-deps /wheels/*.whl \
    && uv pip check --python /opt/nestpoint/bin/python

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="Nestpoint" \
      org.opencontainers.image.description="Multi-tenant membership platform for mother-and-baby store chains" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Proprietary" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed numeric user (the Helm chart's runAsUser), owning only the data folder.
RUN groupadd --system --gid 10001 nestpoint \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/nestpoint \
        --no-create-home --shell /usr/sbin/nologin nestpoint \
    && install --directory --owner 10001 --group 10001 --mode 0750 /var/lib/nestpoint

COPY --from=build /opt/nestpoint /opt/nestpoint

# NESTPOINT_DATA_DIR: the embedded SQLite database and its development keys (docker run
# without PostgreSQL); with PostgreSQL and configured keys nothing is written there.
ENV PATH="/opt/nestpoint/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NESTPOINT_HOST=0.0.0.0 \
    NESTPOINT_DATA_DIR=/var/lib/nestpoint

WORKDIR /var/lib/nestpoint
USER 10001:10001

# 8000: the API and its /metrics; 9100: /metrics of a worker or scheduler process.
EXPOSE 8000 9100

ENTRYPOINT ["nestpoint"]
CMD ["serve"]
