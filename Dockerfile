# syntax=docker/dockerfile:1
# One image for every role of myapp: `myapp serve` runs the role named by --role or MYAPP_ROLE.
#   docker build -t myapp .
#   docker run -e MYAPP_ROLE=backend -e MYAPP_ADMIN_PASSWORD=… -v "$PWD/data:/app/data" myapp
# docker-compose.yml runs it twice (backend, frontend) behind nginx; see
# docs/deployment/docker-compose.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment holding myapp and its dependencies ----------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/myapp
WORKDIR /src
# README.md is part of the package metadata (pyproject's readme), so the build needs it.
COPY pyproject.toml README.md ./
COPY myapp ./myapp
# Packages some deployments add, e.g. the lake mode's (docker-compose.lake.yml).
ARG MYAPP_EXTRA_PACKAGES=""
RUN /opt/myapp/bin/pip install --no-cache-dir . ${MYAPP_EXTRA_PACKAGES} \
    && /opt/myapp/bin/myapp --version

# --- runtime: the same Python, the venv, no compilers, no pip cache, no root -------------------
FROM ${PYTHON_IMAGE}

# /app/lake: where the lake mode's shared volume is mounted (docker-compose.lake.yml); a new
# named volume takes its owner from it.
# A fixed numeric id, so a bind-mounted data directory can be given to it with
# `chown 10001:10001 data` (or the compose file's `user:` set to the directory's owner).
ARG APP_UID=10001
ARG APP_GID=10001

ENV PATH=/opt/myapp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MYAPP_HOST=0.0.0.0 \
    MYAPP_DATA_DIR=/app/data

RUN groupadd --system --gid "${APP_GID}" myapp \
    && useradd --system --uid "${APP_UID}" --gid myapp --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin myapp \
    && mkdir -p /app/data /app/lake \
    && chown "${APP_UID}:${APP_GID}" /app/data /app/lake

COPY --from=build /opt/myapp /opt/myapp
COPY docker/healthcheck.py /app/healthcheck.py

WORKDIR /app
USER ${APP_UID}:${APP_GID}

# 12000: backend (the JSON API); 12001: frontend pages, or role all.
EXPOSE 12000 12001

# The backend may wait up to MYAPP_LOCK_TIMEOUT_S (30 s) for the database file of a container
# that is still stopping, so the start period covers that wait plus the start itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]

ENTRYPOINT ["myapp"]
CMD ["serve"]
