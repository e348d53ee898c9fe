# One image for every AgentCom service. Pick the service with AGENTCOM_SERVICE (dashboard, queue,
# scheduler, llm-registry, hubfsm), or override the command: `python -m agentcom_scheduler`.
#   docker build -t agentcom:latest .
#   docker run -e AGENTCOM_SERVICE=queue -e AGENTCOM_NATS_URL=… -e AGENTCOM_DATABASE_URL=… agentcom
FROM python:3.11-slim

ARG UV_VERSION=0.13.9
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    AGENTCOM_HTTP_HOST=0.0.0.0 \
    AGENTCOM_HOME=/tmp/agentcom

RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && useradd --system --no-create-home --uid 10001 --user-group agentcom
WORKDIR /app

# Third-party dependencies first (only the lock decides them), so a code change reuses this layer.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-workspace --no-cache

# Then the workspace members themselves (tests and caches are kept out by .dockerignore).
COPY libs libs
COPY services services
COPY sidecar sidecar
RUN uv sync --frozen --no-dev --no-cache \
    && python -m compileall -q libs services sidecar

# The code stays owned by root and read-only to the service; nothing writes under /app at run time.
USER 10001:10001
ENV PATH="/app/.venv/bin:$PATH" \
    HOME=/tmp
EXPOSE 8100 8101 8102 8103 8104
CMD ["sh", "-c", ": \"${AGENTCOM_SERVICE:?set AGENTCOM_SERVICE to dashboard, queue, scheduler, llm-registry or hubfsm}\"; exec python -m \"agentcom_$(echo \"$AGENTCOM_SERVICE\" | tr - _)\""]
