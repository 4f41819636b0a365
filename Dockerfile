# syntax=docker/dockerfile:1
# inference-autoscaler: `docker build -t inference-autoscaler .`
#
# Stage 1 builds a wheel and installs it with its dependencies into a virtualenv; stage 2 copies only
# that virtualenv onto a slim Python base: no compiler, no pip cache, no sources, a non-root user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# The runtime set only (no simulator, plots or tuner: those are the sim and tune extras); numpy and
# cryptography ship manylinux wheels; build-essential covers any that must compile.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
RUN pip install --upgrade pip wheel \
    && pip wheel --no-deps --wheel-dir /wheels . \
    && pip install /wheels/*.whl \
    && python -c "import autoscaler.cli"

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="inference-autoscaler" \
      org.opencontainers.image.description="Kubernetes-native autoscaler for GPU/LLM inference" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# The same uid/gid as the Helm chart's securityContext; no login shell, no home on the root fs.
RUN groupadd --system --gid 65532 autoscaler \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin autoscaler
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080 6443
ENTRYPOINT ["inference-autoscaler"]
CMD ["--help"]
