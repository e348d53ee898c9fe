# One image for every AgentCom service; choose the service with AGENTCOM_SERVICE
# (queue, scheduler, llm-registry, hubfsm, dashboard) or override the command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    AGENTCOM_HTTP_HOST=0.0.0.0 \
    AGENTCOM_SERVICE=queue

RUN pip install --no-cache-dir uv && useradd --create-home --uid 10001 agentcom
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY sidecar sidecar
RUN uv sync --frozen --no-dev && chown -R agentcom /app

USER 10001
ENV PATH="/app/.venv/bin:$PATH"
# python -m agentcom_queue, agentcom_llm_registry, …
CMD ["sh", "-c", "exec python -m agentcom_$(echo \"$AGENTCOM_SERVICE\" | tr - _)"]
