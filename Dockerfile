# Two images from one file (`make docker` builds both; never needs the network at run time):
#   serve (default, the last stage): the model server, with only what serving imports
#     (requirements-serve.lock without scikit-learn, scipy, joblib and skops: it serves each
#     version's models/vN/model.onnx with ONNX Runtime):
#       docker build -t mlops:serve .
#       docker run -d -p 8000:8000 -v "$PWD/models:/app/models:ro" mlops:serve
#     A version ONNX cannot represent (registry `served_by: sklearn`) needs the scikit-learn
#     variant, the whole requirements-serve.lock (docs/runbook.md, "Which file is served"):
#       docker build --target serve-sklearn -t mlops:serve-sklearn .
#     The inference log is on (MLOPS_INFERENCE_LOG=/app/logs/inference): mount a folder there
#     (-v "$PWD/logs:/app/logs"), point it at a bucket (-e MLOPS_INFERENCE_LOG=s3://bucket/prefix
#     with AWS_* variables), or turn it off (-e MLOPS_INFERENCE_LOG=off).
#   pipeline: the Make targets (`make all`, drift, ...) with every pipeline dependency:
#       docker build --target pipeline -t mlops:pipeline .
#       docker run --rm -v "$PWD/models:/app/models" -v "$PWD/reports:/app/reports" mlops:pipeline make all
# Users: uid 10001 with group 0 by default; any other uid works with group 0 (the OpenShift
# convention: /app/models and /app/reports are group-owned by root and group-writable, files
# are created group-writable). A mounted folder the user cannot write stops a command with one
# line naming it (exit 2). podman/buildah: build with `--format docker` (`make docker
# ENGINE=podman`), or the HEALTHCHECK is dropped (OCI images have none).
# Layer order: the locked dependencies are installed before the project's code is copied, and
# requirements-dev.lock (only its setuptools pin builds the wheel) reaches no dependency layer.

# The pinned base image appears twice: `base` for the build stages (their shared pip settings)
# and `runtime`, which both images start from and which carries none of the build settings.

# ---- base: what every build stage starts from ----
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3 AS base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# ---- build-tools: the setuptools pin from the dev lock, alone, so a dev-tool bump changes nothing
FROM base AS build-tools
WORKDIR /build
COPY requirements-dev.lock ./
RUN sed -n '/^setuptools==/,/[^\\]$/p' requirements-dev.lock > build-requirements.txt \
    && grep -q -- '--hash=sha256:' build-requirements.txt

# ---- wheel: the mlops package, built by that setuptools (hashes checked) ----
FROM base AS wheel
ENV PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY --from=build-tools /build/build-requirements.txt ./
RUN python -m venv /opt/build-venv \
    && /opt/build-venv/bin/pip install --no-deps --require-hashes -r build-requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
# Also unpacked into /site: the serve image takes the package from there (it has no pip).
RUN /opt/build-venv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/build-venv/bin/pip install --no-deps --no-compile --target /site /wheels/mlops-*.whl \
    && rm -rf /site/bin

# ---- serve-deps / pipeline-deps: each image's locked dependencies in /app/.venv ----
FROM base AS serve-deps
# binutils: `strip` for the step below (this build stage only; the serve image gets the venv).
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils=2.40-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements-serve.lock ./
RUN python -m venv .venv \
    && .venv/bin/pip install --no-deps --require-hashes -r requirements-serve.lock \
    && .venv/bin/pip check
# The serve venv keeps what runs: the serve image copies only the venv, so what goes here
# reaches none of its layers. Nothing imports or loads these at run time:
# - pip and setuptools (26 MB): nothing is installed in the image;
# - the libraries' own test suites (about 65 MB);
# - what only compiles against the libraries (8 MB): numpy.distutils, C headers and sources,
#   static libraries, Cython declarations and sources, type stubs (.pyi);
# - the extension modules' symbol tables and debug info (strip, 12 MB; the code is unchanged).
#   The libraries bundled in *.libs/ stay as they are: auditwheel patched them, and stripping
#   them breaks them (numpy's OpenBLAS then fails to load);
# - scipy.libs' byte-identical copies of numpy.libs' gfortran and quadmath runtimes (3 MB):
#   symlinks to numpy's, which numpy has loaded first anyway (the same soname).
# - pyarrow's Arrow Flight RPC libraries (33 MB): the inference log only writes Parquet files to
#   a folder or a bucket (pyarrow.parquet, pyarrow.fs), and nothing else links them;
# - ONNX Runtime's C library for C/C++ callers (35 MB: the Python module has its own copy linked
#   in and loads no libonnxruntime.so) and its model-building tools (transformers, quantization,
#   tools, datasets, backend; 11 MB): serving only opens a session and runs it;
# Bytecode stays: imports without it take 5x as long.
RUN site=.venv/lib/python3.11/site-packages \
    && rm -f "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/libarrow_python_flight.so* \
        "$site"/pyarrow/_flight.*.so "$site"/pyarrow/flight.py \
    && rm -rf "$site"/onnxruntime/capi/libonnxruntime.so* "$site"/onnxruntime/transformers \
        "$site"/onnxruntime/quantization "$site"/onnxruntime/tools "$site"/onnxruntime/datasets \
        "$site"/onnxruntime/backend \
    && find "$site" -depth -type d -name tests -exec rm -rf {} + \
    && rm -rf "$site/joblib/test" "$site/numpy/distutils" "$site/numpy/_core/include" \
        "$site/numpy/_core/lib" "$site/numpy/random/_examples" \
    && find "$site" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' \
        -o -name '*.a' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyx' -o -name '*.pyi' \) \
        -delete \
    && find "$site" -type f -name '*.so' ! -path '*.libs/*' -exec strip --strip-unneeded {} + \
    && for lib in "$site"/scipy.libs/*; do \
        name=${lib##*/}; \
        if cmp -s "$lib" "$site/numpy.libs/$name"; then ln -sf "../numpy.libs/$name" "$lib"; fi; \
    done

# serve-sklearn's venv: all of requirements-serve.lock, without pip and setuptools.
FROM serve-deps AS serve-sklearn-deps
RUN .venv/bin/pip uninstall --quiet --yes pip setuptools

# serve's venv: ONNX Runtime answers, so scikit-learn, scipy, joblib and skops (and what only
# they need: narwhals, cloudpickle, prettytable, wcwidth) go, 100+ MB; nothing imports them
# unless a version has no model.onnx (then: serve-sklearn).
FROM serve-deps AS serve-onnx-deps
RUN .venv/bin/pip uninstall --quiet --yes scikit-learn scipy joblib skops narwhals cloudpickle \
        prettytable wcwidth \
    && .venv/bin/pip check \
    && .venv/bin/pip uninstall --quiet --yes pip setuptools

FROM base AS pipeline-deps
WORKDIR /app
COPY requirements.lock ./
RUN python -m venv .venv \
    && .venv/bin/pip install --no-deps --require-hashes -r requirements.lock \
    && .venv/bin/pip check

# MLflow's server and UI (requirements-mlflow.lock: mlflow at the dev lock's versions), for the
# `mlflow` image and the tracked pipeline image of docker-compose.yml.
FROM base AS mlflow-deps
WORKDIR /app
COPY requirements-mlflow.lock ./
RUN python -m venv .venv \
    && .venv/bin/pip install --no-deps --require-hashes -r requirements-mlflow.lock \
    && .venv/bin/pip check

# ---- runtime: what both images share ----
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3 AS runtime
RUN useradd --uid 10001 --gid 0 --no-create-home --home-dir /app --shell /usr/sbin/nologin mlops
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    DO_NOT_TRACK=1 \
    ORT_DISABLE_TELEMETRY=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MPLCONFIGDIR=/tmp/matplotlib
# Files and folders a command creates are group-writable (umask 0002), so every uid of group 0
# can carry on with them; exec keeps the command as PID 1, receiving SIGTERM and SIGHUP itself.
ENTRYPOINT ["/bin/sh", "-c", "umask 0002 && exec \"$@\"", "mlops"]

# ---- pipeline: `make all` and every other Make target ----
FROM runtime AS pipeline
# make: the pipeline's stages are Make targets.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=pipeline-deps /app/.venv /app/.venv
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/mlops-*.whl \
    && rm -rf /tmp/wheels \
    && pip check
COPY Makefile stages.mk params.yaml pyproject.toml requirements.lock README.md ./
COPY src ./src
COPY data/raw ./data/raw
# Make's prerequisite of the venv stamp; the venv is ready, so its stamp is made newer (Make must
# not reinstall). Scratch folders: like /tmp. models/ and reports/: group 0, group-writable.
COPY requirements-dev.lock ./
RUN touch .venv/.installed \
    && mkdir -p .make data/processed models reports \
    && chmod 1777 .make data/processed \
    && chgrp 0 models reports \
    && chmod 2775 models reports
USER 10001:0
CMD ["make", "all"]

# ---- pipeline-mlflow: the pipeline image plus the MLflow client (compose's `pipeline` service) ----
FROM pipeline AS pipeline-mlflow
USER 0:0
COPY requirements-mlflow.lock ./
# Same versions as requirements.lock where both hold a package (both follow the dev lock).
RUN pip install --no-deps --require-hashes -r requirements-mlflow.lock \
    && pip check
USER 10001:0

# ---- mlflow: the tracking server and UI, its store in /mlflow (compose's `mlflow` service) ----
FROM runtime AS mlflow
COPY --from=mlflow-deps /app/.venv /app/.venv
# No GenAI job runner: seven more processes at start that this project never gives work.
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
RUN mkdir -p /mlflow \
    && chgrp 0 /mlflow \
    && chmod 2775 /mlflow
USER 10001:0
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2)"]
# --allowed-hosts: the other containers reach it as mlflow:5000, the host on any published port.
CMD ["mlflow", "server", "--backend-store-uri", "sqlite:////mlflow/mlflow.db", \
    "--artifacts-destination", "/mlflow/artifacts", "--host", "0.0.0.0", "--port", "5000", \
    "--workers", "1", "--allowed-hosts", "mlflow:5000,localhost:*,127.0.0.1:*"]

# ---- serve-sklearn: the server with scikit-learn, for versions ONNX cannot represent ----
FROM runtime AS serve-sklearn
COPY --from=serve-sklearn-deps /app/.venv /app/.venv
COPY --from=wheel /site/ /app/.venv/lib/python3.11/site-packages/
COPY params.yaml ./
RUN python -m compileall -q .venv/lib/python3.11/site-packages/mlops \
    && mkdir -p models reports logs/inference \
    && chgrp 0 models reports \
    && chmod 2775 models reports \
    && chgrp -R 0 logs \
    && chmod -R 2775 logs
# Every scored row and its answer, as Parquet (docs/runbook.md, "Inference log"); `off` disables.
ENV MLOPS_INFERENCE_LOG=/app/logs/inference
USER 10001:0
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "mlops", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- serve (the default target): the production model's model.onnx on port 8000 ----
FROM runtime AS serve
COPY --from=serve-onnx-deps /app/.venv /app/.venv
COPY --from=wheel /site/ /app/.venv/lib/python3.11/site-packages/
COPY params.yaml ./
RUN python -m compileall -q .venv/lib/python3.11/site-packages/mlops \
    && mkdir -p models reports logs/inference \
    && chgrp 0 models reports \
    && chmod 2775 models reports \
    && chgrp -R 0 logs \
    && chmod -R 2775 logs
# Every scored row and its answer, as Parquet (docs/runbook.md, "Inference log"); `off` disables.
# /docs off: Swagger UI would load its scripts from a CDN (docs/runbook.md, "API tokens").
# The API token comes at run time, never baked in: -e MLOPS_API_TOKENS=... or a mounted secret
# file named by -e MLOPS_API_TOKENS_FILE=/run/secrets/...; without one the server refuses to start.
ENV MLOPS_INFERENCE_LOG=/app/logs/inference \
    MLOPS_DOCS=off
USER 10001:0
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "mlops", "serve", "--host", "0.0.0.0", "--port", "8000"]
