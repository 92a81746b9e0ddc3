# syntax=docker/dockerfile:1
# One image for every fraudscore service (init, trainer, scorer, stream,
# publisher); docker-compose.yml picks the subcommand. Two stages: the builder
# installs the pinned dependencies and the package into a virtualenv; the
# final stage copies only that virtualenv onto a slim Python and runs as a
# non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so that editing the code does not reinstall them.
# requirements.lock also pins the developer tools (pytest, ruff, mypy): they
# are not runtime dependencies, so they stay out of the image.
COPY requirements.lock ./
RUN grep -vE '^(pytest|ruff|mypy)==' requirements.lock > requirements.runtime \
    && pip install -r requirements.runtime
COPY pyproject.toml README.md ./
COPY fraudscore ./fraudscore
COPY trainer ./trainer
COPY scorer ./scorer
COPY stream ./stream
RUN pip install --no-deps . \
    && fraudscore --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 fraud \
    && useradd --system --uid 10001 --gid fraud --home-dir /app --create-home --shell /usr/sbin/nologin fraud \
    && mkdir -p /app/models /app/data \
    && chown -R fraud:fraud /app
COPY --from=builder /opt/venv /opt/venv
# The real sample (2 MB, samples/README.md) the compose trainer trains the default model on.
COPY --chown=fraud:fraud samples/README.md samples/creditcard-real-dev.csv.gz /app/samples/
USER fraud
WORKDIR /app
# Models and generated data live on volumes (docker-compose.yml, deploy/k8s).
VOLUME ["/app/models", "/app/data"]
# 50051 gRPC scorer, 9464 scorer metrics, 9465 stream metrics.
EXPOSE 50051 9464 9465
ENTRYPOINT ["fraudscore"]
CMD ["--help"]
