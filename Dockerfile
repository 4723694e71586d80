# One image for the operator (headrace-operator) and the runtime (headrace, the entrypoint).
# The operator's Deployment sets its own command; runtime Deployments only pass args to `headrace`.
#
# Every stage starts from one Debian bookworm base (BASE) and takes its tools from Debian's packages,
# so the same file builds with Docker (`docker build .`: debian:bookworm-slim from Docker Hub) and
# without any registry (`scripts/build-images.sh`: buildah, BASE = a debootstrap root filesystem).
# Behind a TLS-inspecting proxy, pass its CA bundle's path inside the build as PIP_CERT and
# CARGO_HTTP_CAINFO (and mount it there); left unset, pip and cargo use their own defaults.
ARG BASE=debian:bookworm-slim

# The compiled commitlog decoder (Rust, PyO3), for Debian's CPython 3.11 that the final image runs.
# Debian's rustc-web / cargo-web are the current Rust releases (bookworm's plain rustc is too old).
FROM ${BASE} AS native
ARG PIP_CERT
ARG CARGO_HTTP_CAINFO
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv python3-dev rustc-web cargo-web gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /maturin && /maturin/bin/pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src/native
COPY native/ ./
RUN /maturin/bin/maturin build --release --interpreter python3 --out /wheels

# Headrace and its dependencies in a virtualenv at the path the final image keeps it.
FROM ${BASE} AS build
ARG PIP_CERT
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/headrace
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline_runtime ./pipeline_runtime
COPY operator ./operator
COPY --from=native /wheels /wheels
RUN /opt/headrace/bin/pip install --no-cache-dir -c constraints.txt /wheels/*.whl . \
    && /opt/headrace/bin/python -c "import headrace_native, pipeline_runtime, cdc_operator"

FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 \
    && rm -rf /var/lib/apt/lists/*
# The operator runs as 10001; runtimes run as the Cassandra pod's uid (set by the operator),
# so everything installed must be readable by any uid: pip installs world-readable files.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin headrace
COPY --from=build /opt/headrace /opt/headrace
ENV PATH=/opt/headrace/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
ENTRYPOINT ["headrace"]
