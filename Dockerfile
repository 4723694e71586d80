# One image for the operator (headrace-operator) and the runtime (headrace, the entrypoint).
# The operator's Deployment sets its own command; runtime Deployments only pass args to `headrace`.

# The compiled commitlog decoder (Rust, PyO3), built for the same CPython (3.11) as the final image.
FROM rust:1-slim-bookworm AS native
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /maturin && /maturin/bin/pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src/native
COPY native/ ./
RUN /maturin/bin/maturin build --release --interpreter python3 --out /wheels

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline_runtime ./pipeline_runtime
COPY operator ./operator
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels .

FROM python:3.11-slim
# The operator runs as 10001; runtimes run as the Cassandra pod's uid (set by the operator),
# so everything installed must be readable by any uid: pip installs world-readable files.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin headrace
COPY --from=build /wheels /wheels
COPY --from=native /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels \
    && python -c "import headrace_native"
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
ENTRYPOINT ["headrace"]
