# The model server, and the pipeline, in one image (runs as uid 10001, never needs the network):
#   docker build -t mlops .
#   docker run --rm -v mlops-models:/app/models mlops make all     # pipeline: train, gate, promote
#   docker run -d -p 8000:8000 -v mlops-models:/app/models:ro mlops # serve production on :8000
# Serving reads models/registry.json and the production version's files: a volume or bind mount
# (readable by uid 10001), or baked into a derived image (FROM mlops, COPY models /app/models).
# /ready answers 503 until a verified production model is loaded; a new production model is picked
# up within a second (registry.json is polled), or at once with `docker kill -s HUP`.

# ---- build: the locked runtime environment and the package, in /app/.venv ----
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY requirements.lock requirements-dev.lock ./
# Every dependency exactly as locked, hashes checked.
RUN python -m venv .venv \
    && .venv/bin/pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
# The package as a wheel, built by the setuptools pinned (with hashes) in the dev lock.
RUN python -m venv /tmp/build-venv \
    && sed -n '/^setuptools==/,/[^\\]$/p' requirements-dev.lock > /tmp/build-requirements.txt \
    && /tmp/build-venv/bin/pip install --no-deps --require-hashes -r /tmp/build-requirements.txt \
    && /tmp/build-venv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && .venv/bin/pip install --no-deps /tmp/wheels/mlops-*.whl \
    && .venv/bin/pip check

# ---- runtime: serves by default; `make all` runs the pipeline ----
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3 AS runtime
# make: the pipeline's stages are Make targets.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin mlops
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY Makefile params.yaml pyproject.toml requirements.lock requirements-dev.lock README.md ./
COPY src ./src
COPY data/raw ./data/raw
# The venv is ready: Make must not reinstall it (its stamp is newer than the locks).
RUN touch .venv/.installed \
    && mkdir -p models reports \
    && chown 10001:10001 /app /app/data models reports
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    DO_NOT_TRACK=1
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "mlops", "serve", "--host", "0.0.0.0", "--port", "8000"]
