# eventq image: one image for every role (worker, api, flower, fake-hubspot); compose picks the
# command. Build: `docker build -t eventq .`   Run: see compose.yaml and docs/operating.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the runtime dependencies at the lock file's versions -----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/eventq
ENV PATH=/opt/eventq/bin:$PATH
WORKDIR /src

# Dependencies first (their own layer, rebuilt only when the lock or the dependency list
# changes). requirements.lock also pins the dev tools (pytest, playwright, mypy…): install the
# project's runtime dependencies *constrained* by the lock, so every package is at the locked
# version and no dev tool lands in the image.
COPY requirements.lock pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/runtime-requirements.txt \
    && pip install --constraint requirements.lock --requirement /tmp/runtime-requirements.txt

# Then the project itself, without touching the dependencies installed above.
COPY README.md ./
COPY eventq ./eventq
COPY worker ./worker
COPY producers ./producers
COPY fake_hubspot ./fake_hubspot
COPY eventq_cli ./eventq_cli
RUN pip install --no-deps . \
    && pip check \
    && python -c "import eventq.jobs, eventq_cli.cli, worker.tasks, producers.http_service; eventq.jobs.load_lua('create_job')"

# --- runtime: the virtualenv on a clean slim image, as a non-root user ---------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="eventq" \
      org.opencontainers.image.description="Reliable, rate-limited delivery of HubSpot marketing events (Celery + Redis)"

RUN groupadd --system --gid 10001 eventq \
    && useradd --system --uid 10001 --gid eventq --home-dir /home/eventq --create-home \
        --shell /usr/sbin/nologin eventq \
    && mkdir -p /data \
    && chown eventq:eventq /data

COPY --from=build /opt/eventq /opt/eventq

ENV PATH=/opt/eventq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EVENTQ_LOG_FORMAT=json

# /data: Flower's persistent state (a volume in compose); the working dir holds no secrets.
WORKDIR /home/eventq
USER eventq:eventq

# 8080 `eventq serve` (ingest, admin, /metrics) · 9808 worker /metrics · 5555 Flower · 8090 fake
EXPOSE 8080 9808 5555 8090

# The default command is the HTTP service, so the image's own health check probes it; compose
# replaces the check for the worker, Flower and the fake.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

CMD ["eventq", "serve", "--host", "0.0.0.0", "--port", "8080"]
