"""Stage 3: the tuned model in vLLM behind an OpenAI-compatible RAG gateway."""
